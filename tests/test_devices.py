"""Device discovery and the nameplate spec table."""

import re

import pytest
import torch

from harness.errors import UserError
from harness.machine.devices import detect_cpu, detect_machine, fp64_flops_per_cycle, resolve_device
from harness.machine.specs import PRECISIONS, match_spec, spec_table


def test_spec_table_rows_are_complete():
    rows = spec_table()
    assert len(rows) >= 17
    for r in rows:
        assert r.source and r.match
        assert set(r.peaks) <= set(PRECISIONS)
        assert all(v > 0 for v in r.peaks.values())
        assert set(r.unconfirmed) <= set(PRECISIONS) | {"memory_gb", "bandwidth_gbs", "power_w"}


@pytest.mark.parametrize(
    "name,row",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB"),
        ("NVIDIA H200", "NVIDIA H200 SXM 141GB"),
        ("NVIDIA H20", "NVIDIA H20 (China)"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("NVIDIA H200 NVL", None),
        ("Tesla T4", None),
    ],
)
def test_match_spec(name, row):
    m = match_spec(name)
    assert (m.name if m else None) == row


def test_h100_dense_figures_from_datasheet():
    r = match_spec("NVIDIA H100 80GB HBM3")
    assert r.peak_tflops("bf16") == 989.4 and r.peak_tflops("fp8") == 1978.9
    assert r.sparse_factor == 2 and r.bandwidth_gbs == 3350


def test_cpu_detection_is_sane():
    c = detect_cpu()
    assert c.logical_cores >= 1 and c.physical_cores >= 1 and c.memory_gib > 0
    if c.peak_fp64_tflops is not None:
        assert c.peak_fp32_tflops == pytest.approx(2 * c.peak_fp64_tflops)
        assert "computed" in c.peak_method
    m = detect_machine().to_dict()
    assert "cpu" in m and isinstance(m["gpus"], list)


def test_fp64_flops_per_cycle():
    assert fp64_flops_per_cycle("GenuineIntel", 6, ["avx2", "fma", "avx512f"])[0] == 32
    assert fp64_flops_per_cycle("AuthenticAMD", 25, ["avx2", "fma", "avx512f"])[0] == 16
    assert fp64_flops_per_cycle("AuthenticAMD", 23, ["avx2", "fma"])[0] == 16
    assert fp64_flops_per_cycle("", None, [])[0] == 4


def test_resolve_device():
    assert resolve_device("cpu")[0] == torch.device("cpu")
    _, why = resolve_device("auto")
    assert "auto picked" in why
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda:1")


def test_nvml_path_with_a_fake_library(monkeypatch):
    """The NVML reader, driven by a stand-in module (no GPU on CI): units and spec matching."""
    import sys
    import types

    from harness.machine.devices import detect_gpus

    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM = 1, 2
    nv.nvmlInit = nv.nvmlShutdown = lambda: None
    nv.nvmlSystemGetDriverVersion = lambda: "580.65"
    nv.nvmlSystemGetCudaDriverVersion_v2 = lambda: 13000
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nv.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * 2**30)
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000  # milliwatts
    nv.nvmlDeviceGetClockInfo = lambda h, c: 1755
    nv.nvmlDeviceGetMaxClockInfo = lambda h, c: 1980 if c == 1 else 2619

    def unsupported(h):
        raise RuntimeError("not supported")

    nv.nvmlDeviceGetUUID = lambda h: "GPU-123"
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    (g,) = detect_gpus()
    assert (g.name, g.memory_gib, g.driver, g.cuda_version) == (
        "NVIDIA H100 80GB HBM3",
        80.0,
        "580.65",
        "13.0",
    )
    assert g.power_limit_w == 700 and g.max_sm_clock_mhz == 1980 and g.mem_clock_mhz == 2619
    assert g.spec_row == "NVIDIA H100 SXM5 80GB" and "datasheet" in g.spec_source
    nv.nvmlDeviceGetEnforcedPowerLimit = unsupported  # a query a device does not support -> None
    assert detect_gpus()[0].power_limit_w is None


def test_user_spec_file_overrides_and_errors(tmp_path, monkeypatch):
    from harness.machine import specs

    monkeypatch.setattr(specs, "_user_rows", [])
    f = tmp_path / "my.toml"
    f.write_text(
        '[[device]]\nname = "My Lab H100"\nmatch = "H100"\npeaks = { bf16 = 900 }\nsource = "lab measurement"\n'
    )
    specs.add_spec_file(f)
    assert match_spec("NVIDIA H100 80GB HBM3").name == "My Lab H100"
    for body, error in [
        ("[[device]]\nname='x'\nmatch='x'\npeaks={}\n", "missing source"),
        ("[[device]]\nname='x'\nmatch='x'\npeaks={fp12=1}\nsource='s'\n", "unknown precision"),
        ("[[device]]\nname='x'\nmatch='x'\npeaks={fp16=-1}\nsource='s'\n", "positive finite number"),
        ("[[device]]\nname='x'\nmatch='('\npeaks={fp16=1}\nsource='s'\n", "bad match pattern"),
        ("[[device]]\nname='x'\nmatch='x'\npeaks={fp16=1}\nsource='s'\ncolour='red'\n", "unknown field"),
        ("nothing = 1\n", "no [[device]] rows"),
    ]:
        f.write_text(body)
        with pytest.raises(ValueError, match=re.escape(error)):
            specs.load_spec_file(f)


def test_cpu_nameplate_and_unknown_precision():
    from harness.measure.metrics import nameplate_peak

    peak, src = nameplate_peak(torch.device("cpu"), "fp32")
    cpu = detect_cpu()
    assert peak == cpu.peak_fp32_tflops and "computed" in src
    assert nameplate_peak(torch.device("cpu"), "fp16") == (None, "unknown: no nameplate fp16 peak for this CPU")
    bf16, src = nameplate_peak(torch.device("cpu"), "bf16")
    assert bf16 == cpu.peak_tflops("bf16") and (bf16 is None) == ("bf16" not in cpu.peak_lowp)


def test_cpu_bf16_and_int8_nameplates_by_hand():
    """Per core and cycle: AMX 1,024 BF16 FLOPs / 2,048 INT8 ops; AVX-512 dot products on 512-bit
    ports 128 / 256, on Zen 4's 256-bit pipes half that."""
    from harness.machine.devices import lowp_ops_per_cycle

    amx = lowp_ops_per_cycle("GenuineIntel", 6, ["avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"])
    assert amx["bf16"][0] == 1024 and amx["int8"][0] == 2048
    icx = lowp_ops_per_cycle("GenuineIntel", 6, ["avx512f", "avx512_bf16", "avx512_vnni"])
    assert icx["bf16"][0] == 128 and icx["int8"][0] == 256
    zen4 = lowp_ops_per_cycle("AuthenticAMD", 25, ["avx512f", "avx512_bf16", "avx512_vnni"])
    assert zen4["bf16"][0] == 64 and zen4["int8"][0] == 128
    assert lowp_ops_per_cycle("GenuineIntel", 6, ["avx2", "fma"]) == {}
    # a 56-core Xeon at 2,000 MHz with AMX: 56 x 2e9 x 1,024 = 114.7 TFLOPS BF16 nameplate


def test_fp64_gemm_is_held_to_the_fp64_tensor_core_nameplate():
    """Found on an H100: DGEMM ran at 60 TFLOPS against the 34 TFLOPS FP64 vector figure."""
    from harness.machine.specs import match_spec
    from harness.measure.peak import gemm_nameplate

    h100 = match_spec("NVIDIA H100 80GB HBM3")
    assert gemm_nameplate(h100, "fp64") == h100.peak_tflops("fp64_tensor") == 67.0
    assert gemm_nameplate(h100, "bf16") == h100.peak_tflops("bf16")


def test_cuda_n_selects_the_device_for_torch_and_numba(monkeypatch):
    """Numba keeps its own current device (default 0): without selecting it, kernels of a rank or a
    `--device cuda:1` run would get another GPU's pointers. Checked with fakes: no GPU needed."""
    import numba.cuda
    import torch

    from harness.machine.devices import resolve_device

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("torch", torch.device(d).index)))
    monkeypatch.setattr(numba.cuda, "select_device", lambda i: calls.append(("numba", i)))
    dev, why = resolve_device("cuda:1")
    assert "Fake GPU" in why
    assert dev == torch.device("cuda", 1) and calls == [("torch", 1), ("numba", 1)]


def test_ascend_910b2_row_is_its_cube_arithmetic_and_unconfirmed_rows_are_marked():
    from harness.machine.specs import match_spec

    row = match_spec("Ascend910B2")
    assert row.name == "Huawei Ascend 910B2"
    assert row.peaks["fp16"] == pytest.approx(24 * 1.8e9 * 16**3 * 2 / 1e12, abs=0.05)  # 353.9
    assert match_spec("Ascend910B").name == "Huawei Ascend 910B"  # the generic row still matches the rest
    for name, prec in (("NVIDIA L20", "fp16"), ("Ascend 910C", "bf16")):
        assert prec in match_spec(name).unconfirmed
