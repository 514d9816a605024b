"""CUDA versions of the kernels against their NumPy references, on small shapes.

Runs on a real GPU when one is visible, and in CI under Numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1, started by tests/test_cuda_simulator.py in its own process). Under the
simulator every kernel runs its own code, a Python thread per CUDA thread: the row top-k block
reductions are the GPU's warp-shuffle ones (only the shuffle instruction is a stand-in, through
shared memory: kernels/common/rowtopk_cuda.py), and every launch has the GPU's shape but one: for
speed a row top-k pass-1 block is one warp there (32 threads, the GPU's 256), through the same code
(the loops stride over blockDim, the reductions go warp by warp); the partition tests run two warps
and test_row_topk_at_the_gpus_block_size 256. A test that swaps the reductions for a plain scan
must be marked sim_scan_for_speed (tests/cuda/conftest.py); none is today, and one that ran a scan
unmarked fails here (`SIM_REDUCTIONS`). Results only: what the simulator cannot show is in the
kernels' docstrings (timing, occupancy, the real shuffle, real concurrency, numba-cuda's compiler).
"""

import sys
import threading

import numpy as np
import pytest
from numba import config, cuda

import kernels.common.rowtopk_cuda as rt
import kernels.vision.detect_cuda as dc
from kernels import (
    batched_nms,
    batched_nms_ref,
    letterbox_normalize,
    letterbox_normalize_ref,
    sample_tokens,
    sample_tokens_ref,
    seg_argmax,
    seg_argmax_ref,
    softmax_topk,
    softmax_topk_ref,
)

pytestmark = [
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator"),
    pytest.mark.slow,  # under the simulator (tests/test_cuda_simulator.py) the kernels run in Python
]
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
SIM = bool(config.ENABLE_CUDASIM)
SIM_SWITCH_INTERVAL = 3e-4  # s (CPython's default: 5e-3); 1e-4 to 1e-3 ran the simulator tests fastest here


def _lock_simulator_shared_arrays():
    """numba-cuda 0.30's simulator caches a launch's shared arrays by allocating line, checking and
    then filling its cache with no lock: two threads of the launch's first block can each get their
    own "shared" array, and that block computes garbage (seen here at SIM_SWITCH_INTERVAL 1e-4 on a
    loaded machine: a wrong softmax_topk in 3 or 4 of 180 launches, each with such a double
    allocation; none in 240 with the lock). The same cache under a lock; returns the undo."""
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory (one buffer), or the refusal
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)  # the simulator's key: the allocating line
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                np_dtype = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
                res = self._allocations[caller] = np.empty(shape, np_dtype)
        return res

    kernelapi.FakeCUDAShared.array = array
    return lambda: setattr(kernelapi.FakeCUDAShared, "array", original)


@pytest.fixture(autouse=True, scope="module")
def simulator_fixed_and_faster():
    """Under the simulator only: shared arrays allocated under a lock (above), and a shorter GIL
    switch interval, for speed only (a simulated barrier waits until every thread has been
    scheduled: test_row_topk_pass2_across_warps took 88 s at CPython's default, 19-32 s at this)."""
    if not SIM:
        yield
        return
    restore = _lock_simulator_shared_arrays()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SIM_SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(interval)
    restore()


@pytest.fixture(autouse=True)
def simulator_pass1_warp(request, monkeypatch):
    """Under the simulator only: a row top-k pass-1 block of one warp (32 threads), for speed (a
    test running more sets it itself); afterwards, every block reduction the test ran was the
    shuffle one unless it is marked sim_scan_for_speed."""
    if not SIM:
        yield
        return
    monkeypatch.setattr(rt, "PASS1_THREADS", 32)
    rt.SIM_REDUCTIONS.clear()
    yield
    if request.node.get_closest_marker("sim_scan_for_speed") is None:
        scans = rt.SIM_REDUCTIONS.count("scan")
        assert scans == 0, f"{scans} block reductions ran as the scan: mark the test sim_scan_for_speed, saying why"


def host(x):
    return x.copy_to_host() if hasattr(x, "copy_to_host") else np.asarray(x)


@pytest.mark.parametrize(
    "src_hw,dst_hw,letterbox",
    [((9, 13), (8, 8), True), ((5, 3), (6, 10), False), ((1, 1), (4, 4), True), ((7, 16), (7, 16), False)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_letterbox_cuda(src_hw, dst_hw, letterbox, dtype):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, *src_hw, 3), dtype=np.uint8)
    out, scale, pad = letterbox_normalize(cuda.to_device(imgs), dst_hw, MEAN, STD, letterbox=letterbox, dtype=dtype)
    ref, rs, rp = letterbox_normalize_ref(imgs, dst_hw, MEAN, STD, letterbox=letterbox, dtype=dtype)
    tol = 2e-3 if dtype == np.float16 else 1e-4
    np.testing.assert_allclose(host(out).astype(np.float32), ref.astype(np.float32), atol=tol, rtol=tol)
    np.testing.assert_array_equal(scale, rs)
    np.testing.assert_array_equal(pad, rp)


def test_softmax_topk_cuda():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 20)).astype(np.float32)
    logits[1, 3] = np.nan
    logits[2, :] = 0.5
    p, i = softmax_topk(cuda.to_device(logits), 4)
    rp, ri = softmax_topk_ref(logits, 4)
    np.testing.assert_array_equal(host(i), ri)
    np.testing.assert_allclose(host(p), rp, rtol=1e-5)


def test_letterbox_cuda_writes_channels_last_directly():
    """An NCHW-shaped output with NHWC strides (a channels_last torch tensor on a GPU): the kernel
    writes the model's layout, no transpose after it."""
    imgs = np.random.default_rng(1).integers(0, 256, (2, 9, 13, 3), dtype=np.uint8)
    nhwc = cuda.device_array((2, 8, 8, 3), np.float32)
    out = nhwc.transpose((0, 3, 1, 2))
    letterbox_normalize(cuda.to_device(imgs), (8, 8), MEAN, STD, out=out)
    ref = letterbox_normalize_ref(imgs, (8, 8), MEAN, STD)[0]
    np.testing.assert_allclose(nhwc.copy_to_host().transpose(0, 3, 1, 2), ref, atol=1e-4)


@pytest.mark.parametrize(
    "shape,out_hw", [((2, 5, 4, 6), None), ((2, 5, 4, 6), (7, 11)), ((1, 3, 2, 150), None), ((1, 3, 2, 150), (3, 140))]
)
def test_seg_argmax_cuda(shape, out_hw):
    """Rows wider than a block's 128 pixels (4 per thread, 32 apart), partial groups, resizing."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=shape).astype(np.float32)
    logits[0, :, 0, 0] = np.nan
    np.testing.assert_array_equal(host(seg_argmax(cuda.to_device(logits), out_hw)), seg_argmax_ref(logits, out_hw))


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (1.0, 5, 1.0), (0.7, 8, 0.8)])
def test_sample_tokens_cuda(temperature, top_k, top_p):
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(4, 30)) * 2).astype(np.float32)
    got = host(sample_tokens(cuda.to_device(logits), temperature, top_k, top_p, seed=5, step=1))
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, temperature, top_k, top_p, seed=5, step=1))


def test_sample_tokens_cuda_step_from_device_memory():
    """The CUDA-graph form: the step comes from a device array; the same tokens as an int step."""
    rng = np.random.default_rng(9)
    logits = (rng.normal(size=(3, 40)) * 2).astype(np.float32)
    d = cuda.to_device(logits)
    for step in (0, 3, 11):
        got = host(sample_tokens(d, 0.8, 6, 0.9, seed=2, step=cuda.to_device(np.array([step], np.int64))))
        np.testing.assert_array_equal(got, sample_tokens_ref(logits, 0.8, 6, 0.9, seed=2, step=step))


def test_greedy_cuda_block_reduction_edge_cases():
    """Rows longer than a block, ties (lower id wins), NaN skipped, all -inf gives -1; `out` reused."""
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(5, 700)).astype(np.float32)
    logits[0, [3, 611]] = 9.0  # tie across threads
    logits[1, ::2] = np.nan
    logits[2] = -np.inf
    logits[3, 650] = np.inf
    logits[4, [0, 256, 512]] = 7.0  # tie within one thread's stride
    out = cuda.device_array(5, np.int64)
    got = host(sample_tokens(cuda.to_device(logits), 0.0, out=out))
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 0.0))
    assert got[0] == 3 and got[2] == -1 and got[3] == 650 and got[4] == 0


@pytest.mark.parametrize("k", [1, 5, 64])
def test_block_topk_merge_ties_nan_and_inf_across_threads(k):
    """Rows longer than a block: ties held by different threads go to the lower index, NaN ranks
    last, +inf shares the probability; softmax_topk and top-k sampling both merge the slices."""
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(4, 700)).astype(np.float32)
    logits[0, [3, 36, 640]] = 8.0  # threads 3, 4 and 0 of 32 (3, 36 and 128 of the GPU's 256)
    logits[1, :690] = np.nan
    logits[2, [5, 600]] = np.inf
    logits[3] = -np.inf
    logits[3, 650] = 1.0
    if k == 64:  # 64 merge rounds per row cost the simulator much: the tie and NaN rows only
        logits = logits[:2].copy()
    p, i = softmax_topk(cuda.to_device(logits), k)
    rp, ri = softmax_topk_ref(logits, k)
    np.testing.assert_array_equal(host(i), ri)
    np.testing.assert_allclose(host(p), rp, rtol=1e-5)
    got = host(sample_tokens(cuda.to_device(logits), 0.9, k, 0.95, seed=7, step=2))
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 0.9, k, 0.95, seed=7, step=2))


@pytest.mark.parametrize("max_det", [None, 5])
def test_batched_nms_cuda_ties_many_overlaps_and_max_det(max_det):
    rng = np.random.default_rng(8)
    xy = rng.uniform(0, 20, (150, 2))
    boxes = np.concatenate([xy, xy + 15], 1).astype(np.float32)  # heavy overlap: much suppression
    scores = rng.integers(0, 6, 150).astype(np.float32)  # many equal scores: index breaks ties
    classes = rng.integers(0, 2, 150) * 7  # class ids need not be small or dense
    got = batched_nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), 0.5, max_det)
    np.testing.assert_array_equal(got, batched_nms_ref(boxes, scores, classes, 0.5, max_det))


def test_batched_nms_cuda_nan_scores_rank_last():
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 30, (30, 2))
    boxes = np.concatenate([xy, xy + 12], 1).astype(np.float32)
    scores = rng.random(30).astype(np.float32)
    scores[[3, 17, 20]] = np.nan
    classes = rng.integers(0, 2, 30)
    got = batched_nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), 0.4)
    np.testing.assert_array_equal(got, batched_nms_ref(boxes, scores, classes, 0.4))


def test_batched_nms_cuda():
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 50, (40, 2))
    wh = rng.uniform(5, 30, (40, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(40).astype(np.float32) / 40
    classes = rng.integers(0, 3, 40)
    got = batched_nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), 0.3)
    np.testing.assert_array_equal(got, batched_nms_ref(boxes, scores, classes, 0.3))


def test_row_topk_across_partitions_and_warps(monkeypatch):
    """Several pass-1 blocks per row (4 partitions of 38 columns) of two warps (the cross-warp step,
    through the code the GPU runs with eight): ties, NaN, +inf and -inf spread over partitions and
    warps; softmax_topk, greedy and top-k/top-p sampling all equal the references."""
    monkeypatch.setattr(rt, "MIN_COLS_PER_BLOCK", 40)
    monkeypatch.setattr(rt, "PASS1_THREADS", 64)
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(4, 150)).astype(np.float32)
    logits[0, [7, 47, 120]] = 6.0  # a tie across partitions 0, 1 and 3: the lowest index first
    logits[0, [81, 110]] = 6.0  # and in partition 2 (columns 76-113) across its warps: threads 5 and 34
    logits[1, 30:150] = np.nan  # NaN ranks last; only one partition holds numbers
    logits[2, [44, 130]] = np.inf
    logits[3, :] = -np.inf
    logits[3, 149] = -1.0
    assert rt.partitions(4, 150) == 4
    p, i = softmax_topk(cuda.to_device(logits), 3)
    rp, ri = softmax_topk_ref(logits, 3)
    np.testing.assert_array_equal(host(i), ri)
    np.testing.assert_allclose(host(p), rp, rtol=1e-5)
    got = host(sample_tokens(cuda.to_device(logits), 0.0))  # greedy
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 0.0))
    got = host(sample_tokens(cuda.to_device(logits), 0.8, 4, 0.9, seed=3, step=1))
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 0.8, 4, 0.9, seed=3, step=1))


def test_row_topk_pass2_across_warps(monkeypatch):
    """More than 32 partitions, so pass 2 merges them with two warps, as an H100 (132 SMs) does at
    batch 1 (152,064 columns in 38 partitions of 4,096: 64 pass-2 threads): here one row of 76
    columns in 38 partitions of 2, a tie between partitions of the two warps and NaN partitions;
    softmax_topk, greedy and sampling."""
    monkeypatch.setattr(rt, "MIN_COLS_PER_BLOCK", 2)
    monkeypatch.setattr(rt, "_SMS", {getattr(cuda.get_current_device(), "id", 0): 132})
    rng = np.random.default_rng(14)
    logits = rng.normal(size=(1, 76)).astype(np.float32)
    logits[0, [6, 71]] = 5.0  # partitions 3 and 35: pass-2 threads of warps 0 and 1 tie, index 6 first
    logits[0, [40, 41, 72]] = np.nan  # partition 20 all NaN, partition 36 half
    assert rt.partitions(1, 76) == 38
    p, i = softmax_topk(cuda.to_device(logits), 3)
    rp, ri = softmax_topk_ref(logits, 3)
    np.testing.assert_array_equal(host(i), ri)
    np.testing.assert_allclose(host(p), rp, rtol=1e-5)
    np.testing.assert_array_equal(host(sample_tokens(cuda.to_device(logits), 0.0)), [6])
    got = host(sample_tokens(cuda.to_device(logits), 1.5, 3, 0.95, seed=8, step=4))
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 1.5, 3, 0.95, seed=8, step=4))


def test_row_topk_at_the_gpus_block_size(monkeypatch):
    """256 threads a block, as on the GPU: the eight-warp reductions (the softmax statistics and
    the best of the block) for softmax_topk, greedy and sampling on one row holding a tie split
    between warps and NaN."""
    monkeypatch.setattr(rt, "PASS1_THREADS", 256)
    logits = np.linspace(-3, 3, 300, dtype=np.float32)[None, :].copy()
    logits[0, [40, 250]] = 9.0  # threads 40 and 250 (warps 1 and 7) tie: index 40 first
    logits[0, [3, 100, 299]] = np.nan
    p, i = softmax_topk(cuda.to_device(logits), 3)
    rp, ri = softmax_topk_ref(logits, 3)
    np.testing.assert_array_equal(host(i), ri)
    np.testing.assert_allclose(host(p), rp, rtol=1e-5)
    np.testing.assert_array_equal(host(sample_tokens(cuda.to_device(logits), 0.0)), [40])
    got = host(sample_tokens(cuda.to_device(logits), 1.0, 3, 1.0, seed=5, step=0))
    np.testing.assert_array_equal(got, sample_tokens_ref(logits, 1.0, 3, 1.0, seed=5, step=0))


@pytest.mark.skipif(not SIM, reason="the simulator's own record")
def test_simulator_runs_the_gpus_block_reductions(monkeypatch):
    """Under the simulator the row top-k block reductions are the shuffle ones on every thread of
    every block, none a scan: per thread one softmax-statistics reduction and k best-of-block ones,
    in pass 1 (3 partitions of 64 threads) and pass 2 (32 threads)."""
    monkeypatch.setattr(rt, "MIN_COLS_PER_BLOCK", 40)
    monkeypatch.setattr(rt, "PASS1_THREADS", 64)
    assert rt.SIM_SHUFFLES
    logits = np.random.default_rng(15).normal(size=(1, 100)).astype(np.float32)
    k = 2
    _, i = softmax_topk(cuda.to_device(logits), k)
    np.testing.assert_array_equal(host(i), softmax_topk_ref(logits, k)[1])
    assert rt.SIM_REDUCTIONS.count("shuffle") == (3 * 64 + 32) * (1 + k)
    assert "scan" not in rt.SIM_REDUCTIONS


@pytest.mark.skipif(not SIM, reason="a fact about the simulator")
def test_simulator_still_has_no_warp_shuffle():
    """rowtopk_cuda's `_shfl_down2` goes through shared memory under the simulator because numba-cuda's
    simulator has no warp-level instruction; once it has cuda.shfl_down_sync, use it there too."""
    from numba.cuda.simulator.kernelapi import FakeCUDAModule

    assert not hasattr(FakeCUDAModule, "shfl_down_sync") and not hasattr(FakeCUDAModule, "shfl_sync_intrinsic")


def test_batched_nms_cuda_float_class_ids():
    """Float class ids (3.0) work as integers; NaN ids are refused, as on the CPU."""
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([3.0, 3.0, 5.0])
    got = batched_nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), 0.5)
    np.testing.assert_array_equal(got, batched_nms_ref(boxes, scores, classes.astype(np.int64), 0.5))
    classes[1] = np.nan
    with pytest.raises(ValueError, match="classes must be finite"):
        batched_nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), 0.5)
    with pytest.raises(ValueError, match="classes must be finite"):
        batched_nms(boxes, scores, classes, 0.5)


def test_batched_nms_cuda_classes_overlaps_ties_and_nan():
    """128 threads per class block, as on the GPU (every NMS test here runs the GPU's launches):
    overlapping boxes of three classes, equal scores and NaN, each class's suppression strided over
    the block's threads."""
    assert dc.NMS_THREADS == 128
    rng = np.random.default_rng(21)
    xy = rng.uniform(0, 12, (24, 2))
    boxes = np.concatenate([xy, xy + 10], 1).astype(np.float32)
    scores = rng.integers(0, 4, 24).astype(np.float32)
    scores[[2, 9]] = np.nan
    classes = rng.integers(0, 3, 24)
    got = batched_nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), 0.45)
    np.testing.assert_array_equal(got, batched_nms_ref(boxes, scores, classes, 0.45))
