"""Every kernel against its NumPy reference (hypothesis for shapes and edge cases), and the
letterbox against OpenCV's INTER_LINEAR resize."""

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kernels import (
    batched_nms,
    batched_nms_ref,
    detect_postprocess,
    detect_postprocess_ref,
    letterbox_geometry,
    letterbox_normalize,
    letterbox_normalize_ref,
    sample_tokens,
    sample_tokens_ref,
    seg_argmax,
    seg_argmax_ref,
    softmax_topk,
    softmax_topk_ref,
    yolo_postprocess,
    yolo_postprocess_ref,
)
from models.vision.detector import anchor_points

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- letterbox_normalize
@st.composite
def image_batches(draw):
    n = draw(st.integers(1, 3))
    imgs = []
    for _ in range(n):
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        seed = draw(st.integers(0, 2**31))
        imgs.append(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return imgs


@FAST
@given(
    imgs=image_batches(),
    out_hw=st.tuples(st.integers(1, 33), st.integers(1, 33)),
    letterbox=st.booleans(),
    swap=st.booleans(),
)
def test_letterbox_matches_reference(imgs, out_hw, letterbox, swap):
    got, gs, gp = letterbox_normalize(imgs, out_hw, MEAN, STD, bgr_to_rgb=swap, letterbox=letterbox)
    ref, rs, rp = letterbox_normalize_ref(imgs, out_hw, MEAN, STD, bgr_to_rgb=swap, letterbox=letterbox)
    np.testing.assert_allclose(got, ref, atol=2e-4, rtol=1e-5)
    np.testing.assert_array_equal(gs, rs)
    np.testing.assert_array_equal(gp, rp)


@pytest.mark.parametrize(
    "src_hw,dst_hw",
    [
        ((1080, 1920), (224, 224)),
        ((1, 1), (5, 7)),
        ((7, 3), (32, 32)),
        ((31, 17), (8, 64)),
        ((480, 640), (640, 640)),
        ((5, 9), (5, 9)),
    ],
)
def test_plain_resize_matches_opencv(src_hw, dst_hw, rng):
    """Same pixel-centre convention as cv2.INTER_LINEAR: exact on float input, +-1 on uint8."""
    img = rng.integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    got, _, _ = letterbox_normalize([img], dst_hw, (0, 0, 0), (1, 1, 1), bgr_to_rgb=False, letterbox=False)
    got = got[0].transpose(1, 2, 0)
    size = (dst_hw[1], dst_hw[0])
    cv_float = cv2.resize(img.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    cv_float = cv_float.reshape(got.shape)
    np.testing.assert_allclose(got, cv_float, atol=1e-3)
    cv_u8 = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR).reshape(got.shape)
    assert np.abs(got - cv_u8.astype(np.float32)).max() <= 1.0


def test_letterbox_geometry_and_padding(rng):
    img = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert letterbox_geometry((1080, 1920), (640, 640), True) == (360, 640, 140, 0)
    out, scale, pad = letterbox_normalize([img], (640, 640), (0, 0, 0), (255, 255, 255))
    assert out.shape == (1, 3, 640, 640) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :140], 114 / 255, rtol=1e-6)  # top band is padding
    np.testing.assert_allclose(out[0, :, 500:], 114 / 255, rtol=1e-6)  # bottom band too
    np.testing.assert_allclose(scale[0], (1 / 3, 1 / 3))
    assert tuple(pad[0]) == (0, 140)


def test_letterbox_swaps_channels():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 10  # B
    img[..., 2] = 200  # R
    out, _, _ = letterbox_normalize([img], (4, 4), (0, 0, 0), (1, 1, 1), bgr_to_rgb=True)
    assert out[0, 0].min() == 200 and out[0, 2].max() == 10


@pytest.mark.parametrize(
    "bad", [[], [np.zeros((4, 4), np.uint8)], [np.zeros((4, 4, 3), np.float32)], [np.zeros((0, 4, 3), np.uint8)]]
)
def test_letterbox_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        letterbox_normalize(bad, (8, 8), MEAN, STD)


# ---------------------------------------------------------------- softmax_topk
logit_values = st.one_of(
    st.floats(-50, 50, width=32),
    st.sampled_from([0.0, 1.0, np.inf, -np.inf, np.nan]),
)


@FAST
@given(
    logits=arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=logit_values),
    k=st.integers(1, 15),
)
def test_softmax_topk_matches_reference(logits, k):
    p, i = softmax_topk(logits, k)
    rp, ri = softmax_topk_ref(logits, k)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(p, rp, rtol=1e-5, atol=1e-7, equal_nan=True)


# rows wider than the scan's chunks (kernels.common.rowtopk.SCAN_CHUNK = 512): whole chunks are skipped when
# their max cannot rank; ties, NaN and infinities across chunk borders must still rank as the reference
@st.composite
def wide_rows(draw):
    """Rows of seeded noise rounded to quarters (ties everywhere), or of one constant, with up to
    60 special values (NaN, +-inf, extremes) at drawn places."""
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(500, 2100))
    if draw(st.booleans()):
        noise = np.random.default_rng(draw(st.integers(0, 2**32))).normal(
            0, draw(st.sampled_from([0.5, 3.0])), (rows, cols)
        )
        a = (np.round(noise * 4) / 4).astype(np.float32)
    else:
        a = np.full((rows, cols), draw(st.sampled_from([0.0, -1.0, np.nan, -np.inf])), np.float32)
    for r, c, v in draw(
        st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1), logit_values), max_size=60)
    ):
        a[r, c] = v
    return a


@FAST
@given(logits=wide_rows(), k=st.integers(1, 70))
def test_softmax_topk_wide_rows_match_reference(logits, k):
    p, i = softmax_topk(logits, k)
    rp, ri = softmax_topk_ref(logits, k)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(p, rp, rtol=1e-5, atol=1e-7, equal_nan=True)


@FAST
@given(logits=wide_rows(), top_k=st.sampled_from([1, 5, 64]), seed=st.integers(0, 2**32))
def test_sample_tokens_wide_rows_match_reference(logits, top_k, seed):
    got = sample_tokens(logits, 0.7, top_k, 0.9, seed=seed, step=3)
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 0.7, top_k, 0.9, seed=seed, step=3))


def test_softmax_topk_defined_edge_cases():
    logits = np.array(
        [[1, 1, 1, 1], [np.nan, 2, np.nan, 1], [np.inf, 0, np.inf, 5], [-np.inf] * 4],
        np.float32,
    )
    p, i = softmax_topk(logits, 3)
    assert list(i[0]) == [0, 1, 2] and np.allclose(p[0], 0.25)  # ties: lower index first
    assert list(i[1][:2]) == [1, 3] and p[1, 2] == 0  # NaN ranks last, carries no mass
    assert list(i[2][:2]) == [0, 2] and np.allclose(p[2], [0.5, 0.5, 0])  # +inf shares mass
    assert np.isnan(p[3]).all()  # no distribution
    p, i = softmax_topk(logits, 99)  # k clipped to C
    assert p.shape == (4, 4)
    with pytest.raises(ValueError):
        softmax_topk(np.zeros((0, 5), np.float32), 1)


# ---------------------------------------------------------------- seg_argmax
@FAST
@given(
    logits=arrays(
        np.float32,
        st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 5), st.integers(1, 7)),
        elements=logit_values,
    )
)
def test_seg_argmax_matches_reference(logits):
    np.testing.assert_array_equal(seg_argmax(logits), seg_argmax_ref(logits))


def test_seg_argmax_agrees_with_numpy_on_plain_numbers(rng):
    logits = rng.normal(size=(2, 19, 16, 32)).astype(np.float32)
    np.testing.assert_array_equal(seg_argmax(logits), logits.argmax(1).astype(np.uint8))
    with pytest.raises(ValueError):
        seg_argmax(np.zeros((1, 300, 2, 2), np.float32))


# ---------------------------------------------------------------- detect_postprocess
def _det_inputs(rng, b, h, w, n_cls, scale=2.0):
    anchors = anchor_points(h, w)
    head = (rng.normal(size=(b, len(anchors), 4 + n_cls)) * scale).astype(np.float32)
    scales = np.full((b, 2), 0.5)
    pads = np.tile([[0.0, 4.0]], (b, 1))
    orig = np.tile([[2 * h - 16, 2 * w]], (b, 1)).astype(np.float64)
    return head, anchors, scales, pads, orig


@FAST
@given(
    seed=st.integers(0, 2**31),
    b=st.integers(1, 3),
    n_cls=st.integers(1, 5),
    conf=st.sampled_from([0.0, 0.25, 0.6, 0.99, 1.0]),
    iou=st.sampled_from([0.0, 0.3, 0.7]),
    max_det=st.integers(1, 50),
)
def test_detect_matches_reference(seed, b, n_cls, conf, iou, max_det):
    args = _det_inputs(np.random.default_rng(seed), b, 64, 96, n_cls)
    got, gc = detect_postprocess(*args, conf_thres=conf, iou_thres=iou, max_det=max_det)
    ref, rc = detect_postprocess_ref(*args, conf_thres=conf, iou_thres=iou, max_det=max_det)
    np.testing.assert_array_equal(gc, rc)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)


def test_detect_agrees_with_torchvision_batched_nms(rng):
    """Same kept set and order as torchvision.ops.batched_nms on the decoded candidates."""
    import torch
    from torchvision.ops import batched_nms

    head, anchors, _, _, _ = _det_inputs(rng, 1, 64, 64, 3, scale=3.0)
    ones, zeros = np.ones((1, 2)), np.zeros((1, 2))
    big = np.array([[1e6, 1e6]])
    dets, n = detect_postprocess(head, anchors, ones, zeros, big, 0.3, 0.5, max_det=10_000)
    logits = head[0, :, 4:]
    cls, best = logits.argmax(1), logits.max(1)
    score = 1 / (1 + np.exp(-best.astype(np.float64)))
    d = np.maximum(head[0, :, :4], 0) * anchors[:, 2:3]
    boxes = np.stack(
        [anchors[:, 0] - d[:, 0], anchors[:, 1] - d[:, 1], anchors[:, 0] + d[:, 2], anchors[:, 1] + d[:, 3]], 1
    )
    ok = score > 0.3
    keep = batched_nms(
        torch.from_numpy(boxes[ok]), torch.from_numpy(score[ok]).float(), torch.from_numpy(cls[ok]), 0.5
    ).numpy()
    expected = np.clip(boxes[ok][keep], 0, 1e6)  # the kernel clips to the image
    assert n[0] == len(keep) > 10
    np.testing.assert_allclose(dets[0, : n[0], :4], expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(dets[0, : n[0], 5], cls[ok][keep])


def test_detect_edge_cases(rng):
    head, anchors, scales, pads, orig = _det_inputs(rng, 2, 32, 32, 2)
    dets, n = detect_postprocess(head, anchors, scales, pads, orig, conf_thres=1.0)
    assert list(n) == [0, 0]  # zero detections
    head[:] = 0.0  # all-equal scores: order by anchor index, identical zero-size boxes
    dets, n = detect_postprocess(head, anchors, scales, pads, orig, conf_thres=0.1, max_det=5)
    ref, rn = detect_postprocess_ref(head, anchors, scales, pads, orig, conf_thres=0.1, max_det=5)
    np.testing.assert_array_equal(n, rn)
    np.testing.assert_allclose(dets, ref, atol=1e-4)
    head[:, :, 4:] = np.nan  # NaN logits never become detections
    _, n = detect_postprocess(head, anchors, scales, pads, orig, conf_thres=0.0)
    assert list(n) == [0, 0]
    with pytest.raises(ValueError):
        detect_postprocess(head[:, :5], anchors, scales, pads, orig)


def test_detect_maps_boxes_back_to_original_image(rng):
    anchors = np.array([[100.0, 200.0, 8.0]], np.float32)
    head = np.array([[[1, 2, 3, 4, 5.0]]], np.float32)  # ltrb = 8, 16, 24, 32 px
    dets, n = detect_postprocess(
        head, anchors, np.array([[0.5, 0.5]]), np.array([[10, 20]]), np.array([[1000.0, 1000.0]])
    )
    assert n[0] == 1
    np.testing.assert_allclose(dets[0, 0, :4], [(92 - 10) * 2, (184 - 20) * 2, (124 - 10) * 2, (232 - 20) * 2])


# ---------------------------------------------------------------- yolo_postprocess (YOLOv8 export layout)
def _yolo_inputs(rng, b, n_anchors, n_cls, ties=False):
    """[B, 4 + C, A]: centres in a 96x64 input, sizes 0..40 px, sigmoid scores (some NaN)."""
    out = np.empty((b, 4 + n_cls, n_anchors), np.float32)
    out[:, 0] = rng.uniform(0, 96, (b, n_anchors))
    out[:, 1] = rng.uniform(0, 64, (b, n_anchors))
    out[:, 2:4] = rng.uniform(0, 40, (b, 2, n_anchors))
    scores = rng.uniform(0, 1, (b, n_cls, n_anchors))
    out[:, 4:] = np.round(scores, 1) if ties else scores
    out[:, 4:][rng.uniform(size=(b, n_cls, n_anchors)) < 0.02] = np.nan
    scales = np.full((b, 2), 0.5)
    pads = np.tile([[0.0, 4.0]], (b, 1))
    orig = np.tile([[112.0, 192.0]], (b, 1))
    return out, scales, pads, orig


@FAST
@given(
    seed=st.integers(0, 2**31),
    b=st.integers(1, 3),
    n_anchors=st.integers(1, 300),
    n_cls=st.integers(1, 5),
    conf=st.sampled_from([0.0, 0.25, 0.6, 0.99, 1.0]),
    iou=st.sampled_from([0.0, 0.3, 0.7]),
    max_det=st.integers(1, 50),
    ties=st.booleans(),
)
def test_yolo_layout_matches_reference(seed, b, n_anchors, n_cls, conf, iou, max_det, ties):
    args = _yolo_inputs(np.random.default_rng(seed), b, n_anchors, n_cls, ties)
    st_got: dict = {}
    got, gc = yolo_postprocess(*args, conf_thres=conf, iou_thres=iou, max_det=max_det, stats=st_got)
    ref, rc = yolo_postprocess_ref(*args, conf_thres=conf, iou_thres=iou, max_det=max_det)
    np.testing.assert_array_equal(gc, rc)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)
    assert (st_got["candidates"] >= gc).all()


def test_yolo_layout_agrees_with_torchvision_batched_nms(rng):
    """The kept set of torchvision.ops.batched_nms on the boxes a YOLOv8 user decodes by hand."""
    import torch
    from torchvision.ops import batched_nms, box_convert

    out, _, _, _ = _yolo_inputs(rng, 1, 500, 3)
    out[:, 4:] = np.nan_to_num(out[:, 4:])
    one, zero, big = np.ones((1, 2)), np.zeros((1, 2)), np.array([[1e6, 1e6]])
    dets, n = yolo_postprocess(out, one, zero, big, 0.3, 0.5, max_det=10_000)
    o = torch.from_numpy(out[0])
    score, cls = o[4:].max(0)
    ok = score > 0.3
    boxes = box_convert(o[:4].T[ok], "cxcywh", "xyxy")
    keep = batched_nms(boxes, score[ok], cls[ok], 0.5)
    assert n[0] == len(keep) > 10
    np.testing.assert_allclose(dets[0, : n[0], :4], boxes[keep].clamp(0, 1e6).numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(dets[0, : n[0], 5], cls[ok][keep].numpy())


def test_yolo_layout_maps_back_and_refuses_bad_shapes():
    out = np.array([[[100.0], [200.0], [20.0], [40.0], [0.9]]], np.float32)  # one anchor, one class
    dets, n = yolo_postprocess(out, np.array([[0.5, 0.5]]), np.array([[10, 20]]), np.array([[1000.0, 1000.0]]))
    assert n[0] == 1
    np.testing.assert_allclose(
        dets[0, 0], [(90 - 10) * 2, (180 - 20) * 2, (110 - 10) * 2, (220 - 20) * 2, 0.9, 0], rtol=1e-6
    )
    with pytest.raises(ValueError):
        yolo_postprocess(out[:, :4], np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError):
        yolo_postprocess(out, np.ones((2, 2)), np.zeros((1, 2)), np.ones((1, 2)))


# ---------------------------------------------------------------- float16 output, resized argmax
@FAST
@given(imgs=image_batches(), out_hw=st.tuples(st.integers(1, 33), st.integers(1, 33)), letterbox=st.booleans())
def test_letterbox_float16_output(imgs, out_hw, letterbox):
    got, _, _ = letterbox_normalize(imgs, out_hw, MEAN, STD, letterbox=letterbox, dtype=np.float16)
    ref, _, _ = letterbox_normalize_ref(imgs, out_hw, MEAN, STD, letterbox=letterbox)
    assert got.dtype == np.float16
    # one rounding to float16 of a float32 within 2e-4 of the reference
    np.testing.assert_allclose(got.astype(np.float32), ref, rtol=1e-3, atol=2e-3)


def test_float16_bits_match_numpy(rng):
    from numba import njit

    from kernels.common.bits import f32_bits_to_f16_bits

    @njit
    def to_f16_bits(src, dst):
        u = src.view(np.uint32)
        for i in range(src.size):
            dst[i] = f32_bits_to_f16_bits(u[i])

    v = np.concatenate(
        [
            (rng.normal(size=20000) * 10.0 ** rng.uniform(-9, 6, 20000)).astype(np.float32),
            np.array([0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, 6e-8, 2.98e-8, 1e-5], np.float32),
        ]
    )
    bits = np.empty(v.size, np.uint16)
    to_f16_bits(v, bits)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(bits, v.astype(np.float16).view(np.uint16))


@FAST
@given(
    logits=arrays(
        np.float32,
        st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
        elements=logit_values,
    ),
    out_hw=st.tuples(st.integers(1, 13), st.integers(1, 13)),
)
# out_hw equal to the logits' size is no resize: inf stays inf (interpolating would make inf * 0 = NaN)
@example(logits=np.array([[[[np.inf]], [[0.0]]]], np.float32), out_hw=(1, 1))
def test_seg_argmax_resized_matches_reference(logits, out_hw):
    np.testing.assert_array_equal(seg_argmax(logits, out_hw), seg_argmax_ref(logits, out_hw))


def test_seg_argmax_resized_agrees_with_torch_interpolate(rng):
    import torch

    logits = rng.normal(size=(1, 7, 16, 24)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(logits), (45, 61), mode="bilinear", align_corners=False)
    assert np.mean(seg_argmax(logits, (45, 61)) == t.argmax(1).numpy()) > 0.999


# ---------------------------------------------------------------- batched_nms, radix argsort
def test_argsort_desc_is_stable_with_nan_last(rng):
    from kernels.common.sort import argsort_desc

    x = rng.normal(size=5001).astype(np.float32)
    x[::7] = x[3]
    x[[5, 50]] = np.nan
    x[6], x[8] = -0.0, 0.0
    x[9], x[10] = np.inf, -np.inf
    ref = np.lexsort((np.arange(x.size), -np.nan_to_num(x, nan=0, posinf=np.inf), np.isnan(x)))
    np.testing.assert_array_equal(argsort_desc(x), ref)


@FAST
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(0, 300),
    n_cls=st.integers(1, 6),
    iou=st.sampled_from([0.0, 0.3, 0.7]),
)
def test_batched_nms_matches_reference_and_torchvision(seed, n, n_cls, iou):
    import torch
    from torchvision.ops import batched_nms as tv_batched_nms

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 40, (n, 2))], 1).astype(np.float32)
    scores = (rng.permutation(n) / max(n, 1)).astype(np.float32)  # distinct: torch's sort is not stable
    classes = rng.integers(0, n_cls, n)
    got = batched_nms(boxes, scores, classes, iou)
    np.testing.assert_array_equal(got, batched_nms_ref(boxes, scores, classes, iou))
    tv = tv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou)
    np.testing.assert_array_equal(got, tv.numpy())


def test_batched_nms_ties_and_max_det():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.5, 0.5, 0.5, 0.9], np.float32)
    classes = np.array([0, 0, 0, 1])
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), [3, 0, 2])  # ties: lower index
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5, max_det=2), [3, 0])
    assert batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), 0.5).size == 0


# ---------------------------------------------------------------- sample_tokens
@FAST
@given(
    logits=arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 40)), elements=logit_values),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    top_k=st.sampled_from([0, 1, 3, 64, 100]),
    top_p=st.sampled_from([1.0, 0.9, 0.3]),
    seed=st.integers(0, 2**63),
    step=st.integers(0, 1000),
)
def test_sample_tokens_matches_reference(logits, temperature, top_k, top_p, seed, step):
    got = sample_tokens(logits, temperature, top_k, top_p, seed=seed, step=step)
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, temperature, top_k, top_p, seed=seed, step=step))


def test_sample_tokens_semantics():
    logits = np.array([[0, 1, 2, 3], [5, 5, 1, 0], [np.nan] * 4, [-np.inf] * 4, [np.nan, 1, np.inf, 0]], np.float32)
    assert list(sample_tokens(logits, 0.0)) == [3, 0, -1, -1, 2]  # greedy; ties: lower id; no valid -> -1
    assert sample_tokens(logits[:1], 1.0, top_k=1)[0] == 3
    assert all(sample_tokens(logits[4:], 1.0, seed=s)[0] == 2 for s in range(20))  # +inf takes all mass
    draws = np.array([sample_tokens(logits[:1], 1.0, seed=7, step=s)[0] for s in range(4000)])
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, np.exp([0, 1, 2, 3]) / np.exp([0, 1, 2, 3]).sum(), atol=0.03)
    assert set(sample_tokens(np.tile(logits[:1], (50, 1)), 1.0, top_p=0.6)) == {3}  # p(3)=0.64 >= 0.6
    a = sample_tokens(np.tile(logits[:1], (8, 1)), 1.0, seed=1)
    assert np.array_equal(a, sample_tokens(np.tile(logits[:1], (8, 1)), 1.0, seed=1))  # seeded
    for bad in (dict(temperature=-1), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            sample_tokens(logits, **{"temperature": 1.0, **bad})
    with pytest.raises(ValueError):
        sample_tokens(np.zeros((0, 4), np.float32))


def test_cuda_kernels_index_with_ints_after_floor():
    """numba-cuda types math.floor(float) as a float (CPU Numba and the simulator give an int), so a
    floor used as an index must go through int(): found on an H100, where seg_argmax's CUDA kernel
    failed to compile. The simulator cannot see it, so check the sources."""
    import inspect
    import re

    import kernels
    from kernels.common import rowtopk_cuda
    from kernels.vision import detect_cuda, letterbox_cuda, segment_cuda

    for mod in (letterbox_cuda, segment_cuda, detect_cuda, rowtopk_cuda, kernels.vision.classify, kernels.llm.sample):
        for line in inspect.getsource(mod).splitlines():
            for m in re.finditer(r"math\.(floor|ceil)\(", line):
                assert line[max(0, m.start() - 4) : m.start()] == "int(", f"{mod.__name__}: {line.strip()}"


def test_device_outputs_follow_the_input_library():
    """GPU outputs come from torch's caching allocator when the input is a torch tensor (checked here
    with a CPU tensor: the dtype mapping and the host copy), else from Numba."""
    import torch

    from kernels.common.device import device_empty, to_host

    for np_dtype, t_dtype in (
        (np.float32, torch.float32),
        (np.float16, torch.float16),
        (np.int64, torch.int64),
        (np.uint8, torch.uint8),
    ):
        out = device_empty(torch.zeros(1), (2, 3), np_dtype)
        assert isinstance(out, torch.Tensor) and out.dtype == t_dtype and out.shape == (2, 3)
        assert to_host(out.fill_(1)).dtype == np.dtype(np_dtype)


def test_device_time_is_event_time_around_each_call_queued_behind_a_sleep(monkeypatch):
    """device_time_ms arithmetic with fake CUDA events: the median of (end - start) per call, the
    calls queued after one sleep kernel and read after one synchronize."""
    import harness.kernelbench.bench as kb

    clock, log = [0.0], []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self):
            self.t = clock[0]

        def elapsed_time(self, end):
            return (end.t - self.t) * 1e3

    durations = iter([0.5, 0.002, 0.003, 0.001, 0.004, 0.002])  # the untimed first call, then 5 calls

    def fn():
        clock[0] += next(durations)

    monkeypatch.setattr(kb.torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(kb.torch.cuda, "_sleep", lambda cycles: log.append("sleep"))
    monkeypatch.setattr(kb.torch.cuda, "synchronize", lambda *a: log.append("sync"))
    assert kb.device_time_ms(fn, n=5) == pytest.approx(2.0)
    assert log == ["sync", "sleep", "sync"]


def test_kernels_table_shows_device_and_call_time():
    from harness.cli.tables import kernels_table
    from harness.kernelbench.bench import Row

    rows = [
        Row(
            "softmax_topk (cuda)",
            "64 x 152064, k=5",
            900.0,
            0.25,
            "torch softmax+topk (cuda)",
            0.4,
            3.2,
            2.0,
            2000.0,
            0.7,
            ours_device_ms=0.05,
            peer_device_ms=0.16,
        )
    ]
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(kernels_table(rows, 2900.0))
    text = console.export_text()
    assert "device / call ms" in text and "0.050 / 0.250" in text and "0.160 / 0.400" in text and "2x ok" in text


def test_openvino_in_the_process_leaves_the_kernels_on_openmp():
    """Numba tries TBB first, and openvino brings libtbb: importing it first must not switch our kernels'
    threading layer (a subprocess: the layer is chosen once per process)."""
    pytest.importorskip("openvino")
    import subprocess
    import sys

    code = (
        "import openvino, numpy as np, numba; from kernels import letterbox_normalize; "
        "letterbox_normalize([np.zeros((32, 48, 3), np.uint8)], (16, 16), (0, 0, 0), (1, 1, 1)); "
        "print(numba.threading_layer())"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "omp"
