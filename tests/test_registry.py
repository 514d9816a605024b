"""Every registered preset builds with seeded random weights and runs one batch (by construction:
the test walks the registry), and FLOP counts agree with published and hand-computed figures."""

import pytest
import torch

from harness.errors import UserError
from harness.measure.flops import count_flops, preset_flops_per_sample
from models import build_model, get_preset, list_presets
from models.vision.detector import anchor_points


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.name)
def test_every_preset_builds_and_runs_one_batch(preset):
    model, source = build_model(preset, seed=0)
    assert source["kind"] == "random-init" and source["seed"] == 0 and "batchnorm" in source
    x = torch.randn(1, 3, *preset.input_hw)
    with torch.inference_mode():
        y = model(x)
    assert torch.isfinite(y).all()
    # BatchNorm calibrated on noise keeps outputs inside fp16's range: uncalibrated, MobileNetV3's
    # logits were ~1e-10 and EfficientNet's ~1e-13, below fp16's smallest subnormal (an H100 finding)
    assert 1e-3 < float(y.abs().max()) < 6e4
    h, w = preset.input_hw
    if preset.task == "classify":
        assert y.shape == (1, preset.num_classes)
    elif preset.task == "segment":
        assert y.shape == (1, preset.num_classes, h, w)
    else:
        assert y.shape == (1, len(anchor_points(h, w)), 4 + preset.num_classes)
    assert preset_flops_per_sample(preset.builder, preset.num_classes, preset.input_hw) > 0


def test_seeded_init_is_reproducible():
    p = get_preset("steel-defect-mobilenetv3")
    a, _ = build_model(p, seed=3)
    b, _ = build_model(p, seed=3)
    c, _ = build_model(p, seed=4)
    pa, pb, pc = (next(iter(m.state_dict().values())) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_resnet50_flops_match_published_figure():
    """ResNet-50 at 224x224 = 4.09 GMACs = 8.18 GFLOPs (torchvision's model card)."""
    p = get_preset("resnet50-imagenet")
    flops = preset_flops_per_sample(p.builder, p.num_classes, p.input_hw)
    assert abs(flops / 2 / 1e9 - 4.09) / 4.09 < 0.005


def test_flop_counter_against_hand_computation():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)  # 8 x 3 x 3 x 3 MACs per output pixel
    lin = torch.nn.Linear(8 * 16 * 16, 10)
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), lin)
    expected = 2 * (16 * 16 * 8 * 3 * 3 * 3) + 2 * (8 * 16 * 16 * 10)
    assert count_flops(model, torch.zeros(1, 3, 16, 16)) == expected
    assert count_flops(model, torch.zeros(4, 3, 16, 16)) == 4 * expected


def test_detector_flops_by_hand_for_its_head_conv():
    """The last class conv of the stride-8 head on 640x640: 80x80 px x c_in x C MACs."""
    p = get_preset("pcb-defect-yolo")
    with torch.device("meta"):
        m = p.builder(p.num_classes)
    conv = m.heads[0].cls[-1]
    flops = count_flops(conv, torch.empty(1, conv.in_channels, 80, 80, device="meta"))
    assert flops == 2 * 80 * 80 * conv.in_channels * p.num_classes


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match=r"did you mean.*steel-defect-resnet50"):
        get_preset("steel-defect-resnet5")


def test_list_presets_glob():
    names = [p.name for p in list_presets("steel-*")]
    assert names and all(n.startswith("steel-") for n in names)
    tasks = {p.task for p in list_presets()}
    assert tasks == {"classify", "detect", "segment"}
