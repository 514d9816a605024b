"""The kernel benchmark: our Numba kernels against their peers, side by side in one run.

Each case times our kernel and every peer on the same inputs (median of repeated calls, after one
untimed call; the first call of ours is reported apart as JIT/cache-load time). Bandwidth is the
bytes the job must move (inputs read + outputs written) over our time, beside a copy measured in
the same run (np.copyto of 256 MiB, or on a GPU a device-to-device copy; read + write counted).

On a GPU each side gets two times:
- call time: the Python call until its work is done (a device synchronize after each call);
- device time: CUDA events recorded on the stream around each call, the calls queued behind a
  sleep kernel so that the host is ahead of the GPU and launch overhead is not in the interval
  (`device_time_ms`). A call that synchronizes inside (batched NMS copies to the host) cannot be
  queued ahead, and its device time then includes its host gaps.
Speed-ups and bandwidth on a GPU use device time; the gap between the two is the call overhead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.transforms.v2 import functional as F

from harness.kernelbench import peers
from harness.machine.devices import detect_cpu, device_name
from harness.measure.timing import repeat_timed
from kernels import (
    batched_nms,
    detect_postprocess,
    letterbox_geometry,
    letterbox_normalize,
    sample_tokens,
    seg_argmax,
    softmax_topk,
)
from kernels.llm.gemv import linear_rows
from kernels.llm.qgemv import BLOCKS, pack, qlinear_rows
from models.vision.detector import anchor_points

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@dataclass
class Case:
    name: str
    shape: str
    ours: Callable[[], object]
    peers: dict[str, Callable[[], object]]
    bytes_moved: int | None  # None where the job is not about memory traffic (NMS)
    targets: dict[str, float] = field(default_factory=dict)  # peer -> required speed-up


@dataclass
class Row:
    kernel: str
    shape: str
    first_call_ms: float
    ours_ms: float  # call time
    peer: str
    peer_ms: float | None
    speedup: float | None  # peer / ours, on device time where measured
    target: float | None
    gbs: float | None
    copy_fraction: float | None
    ours_device_ms: float | None = None  # GPU: CUDA-event time on the stream
    peer_device_ms: float | None = None


def time_ms(fn: Callable[[], object], min_time: float = 0.3, min_iters: int = 5) -> float:
    """Median wall time of fn in ms, over at least min_iters calls and min_time seconds."""
    fn()
    return statistics.median(repeat_timed(fn, min_time, min_iters)) * 1e3


def copy_bandwidth_gbs(nbytes: int = 256 << 20) -> float:
    """Host memory bandwidth from a large copy, read + write counted (GB/s)."""
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    return 2 * nbytes / (time_ms(lambda: np.copyto(dst, src)) / 1e3) / 1e9


def _has_cv2() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _rows_read(src_h: int, dst_h: int) -> int:
    """Source rows a bilinear resize must read (rows with a non-zero weight)."""
    f = np.maximum((np.arange(dst_h) + 0.5) * (src_h / dst_h) - 0.5, 0)
    y0 = np.minimum(np.floor(f).astype(int), src_h - 1)
    w = f - y0
    return len(set(y0) | set(np.minimum(y0 + 1, src_h - 1)[w > 0]))


def cases(scale: float = 1.0) -> list[Case]:  # long: a table of workloads, one block per kernel, read top down
    """The issue's workloads; `scale` < 1 shrinks them for a quick look (not the target shapes)."""
    rng = np.random.default_rng(0)
    out_list = []
    n_img = max(1, int(16 * scale))
    imgs = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(n_img)]
    out = np.empty((n_img, 3, 640, 640), np.float32)
    lb_peers = {"torchvision v2": lambda: peers.torchvision_letterbox(imgs, (640, 640), MEAN, STD, out=out)}
    if _has_cv2():
        lb_peers = {
            "opencv": lambda: peers.opencv_letterbox(imgs, (640, 640), MEAN, STD, out=out),
            **lb_peers,
        }
    out_list.append(
        Case(
            "letterbox_normalize",
            f"{n_img} x 1920x1080 BGR -> 640x640 f32",
            lambda: letterbox_normalize(imgs, (640, 640), MEAN, STD, out=out),
            lb_peers,
            _rows_read(1080, 360) * 1920 * 3 * n_img + out.nbytes,
            {"opencv": 2.0, "torchvision v2": 4.0},
        )
    )

    anchors = anchor_points(640, 640)
    head = rng.normal(size=(1, len(anchors), 84)).astype(np.float32)
    logits = head[0, :, 4:]
    cls = logits.argmax(1)
    score = (1 / (1 + np.exp(-logits.max(1)))).astype(np.float32)
    d = np.maximum(head[0, :, :4], 0) * anchors[:, 2:3] * 4
    boxes = np.stack(
        [anchors[:, 0] - d[:, 0], anchors[:, 1] - d[:, 1], anchors[:, 0] + d[:, 2], anchors[:, 1] + d[:, 3]],
        1,
    )
    boxes = boxes.astype(np.float32)
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(score), torch.from_numpy(cls)

    out_list.append(
        Case(
            "batched_nms",
            f"{len(anchors)} boxes, 80 classes, IoU 0.7",
            lambda: batched_nms(boxes, score, cls, 0.7),
            {"torchvision.ops.batched_nms": lambda: tv_batched_nms(tb, ts, tc, 0.7)},
            None,
            {"torchvision.ops.batched_nms": 10.0},
        )
    )
    one = (np.ones((1, 2)), np.zeros((1, 2)), np.array([[640.0, 640.0]]))
    th, ta = torch.from_numpy(head), torch.from_numpy(anchors)
    out_list.append(
        Case(
            "detect_postprocess",
            f"1 x {len(anchors)} x 84 head, conf 0.001",
            lambda: detect_postprocess(head, anchors, *one, 0.001, 0.7, 300),
            {"torch ops + batched_nms": lambda: peers.torch_detect_postprocess(th, ta, 0.001, 0.7, 300)},
            head.nbytes,
        )
    )

    rows = max(1, int(64 * scale))
    vocab_logits = rng.normal(size=(rows, 152064)).astype(np.float32)
    tl = torch.from_numpy(vocab_logits)
    out_list.append(
        Case(
            "softmax_topk",
            f"{rows} x 152064, k=5",
            lambda: softmax_topk(vocab_logits, 5),
            {"torch softmax+topk": lambda: peers.torch_softmax_topk(tl, 5)},
            vocab_logits.nbytes,
            {"torch softmax+topk": 2.0},
        )
    )
    gen = torch.Generator().manual_seed(0)
    out_list.append(
        Case(
            "sample_tokens",
            f"{rows} x 152064, T=0.7 top-k 50 top-p 0.9",
            lambda: sample_tokens(vocab_logits, 0.7, 50, 0.9),
            {"torch topk+softmax+multinomial": lambda: peers.torch_sample_tokens(tl, 0.7, 50, 0.9, gen)},
            vocab_logits.nbytes,
            {"torch topk+softmax+multinomial": 2.0},
        )
    )
    out_list.append(
        Case(
            "sample_tokens (greedy)",
            f"{rows} x 152064, T=0",
            lambda: sample_tokens(vocab_logits, 0.0),
            {"torch argmax": lambda: tl.argmax(-1)},
            vocab_logits.nbytes,
        )
    )
    # LLM decode on the CPU: one row times a weight matrix far larger than the caches (qwen2-0.5b's
    # LM head, 151,936 x 896 bf16 = 272 MB at full scale), so the matmul is a memory read
    n_out = max(1024, int(151936 * scale))
    w = torch.randn(n_out, 896, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    x = torch.randn(1, 896, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    w_bits, x32, y32 = w.view(torch.int16).numpy().view(np.uint16), x.float().numpy(), np.empty((1, n_out), np.float32)
    out_list.append(
        Case(
            "linear_rows (decode matmul)",
            f"1 x 896 @ {n_out} x 896 bf16",
            lambda: linear_rows(x32, w_bits, None, y32),
            {"torch linear (bf16)": lambda: torch.nn.functional.linear(x, w)},
            w_bits.nbytes,
            {"torch linear (bf16)": 1.5},
        )
    )
    # the same from GGUF blocks as stored (run-llm --precision native), against torch's bf16 linear on the
    # same shape; K = 1024 (a whole number of 256-weight K-quant blocks), random bytes with small scales
    wq = torch.randn(n_out, 1024, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    xq = torch.randn(1, 1024, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    xq32 = xq.float().numpy()
    for qtype in ("Q4_1", "Q4_K", "Q8_0"):
        blocks = _random_blocks(qtype, n_out, 1024, rng)
        packed = pack(blocks, qtype, 1024)
        out_list.append(
            Case(
                f"qlinear_rows {qtype} (decode matmul)",
                f"1 x 1024 @ {n_out} x 1024 {qtype}",
                lambda p=packed, q=qtype: qlinear_rows(xq32, p, q, n_out),
                {"torch linear (bf16)": lambda: torch.nn.functional.linear(xq, wq)},
                blocks.nbytes,
            )
        )
    seg = rng.normal(size=(max(1, int(2 * scale)), 19, 512, 1024)).astype(np.float32)
    tseg = torch.from_numpy(seg)
    out_list.append(
        Case(
            "seg_argmax",
            f"{seg.shape[0]} x 19 x 512x1024",
            lambda: seg_argmax(seg),
            {"torch argmax": lambda: peers.torch_seg_argmax(tseg)},
            seg.nbytes + seg.nbytes // 19 // 4,
        )
    )
    return out_list


def _random_blocks(qtype: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Valid `qtype` blocks [n, row bytes]: random quant bytes, float16 scales of 0.01."""
    size, nbytes = BLOCKS[qtype]
    w = rng.integers(0, 256, (n, k // size, nbytes), dtype=np.uint8)
    scale = np.full((n, k // size), 0.01, np.float16).view(np.uint8).reshape(n, k // size, 2)
    for at in {"Q8_0": [0], "Q4_1": [0, 2], "Q4_K": [0, 2]}[qtype]:
        w[:, :, at : at + 2] = scale
    return w.reshape(n, -1)


def _synced(fn: Callable[[], object]) -> Callable[[], object]:
    """fn, then wait for the GPU (Numba launches and torch work share the legacy default stream)."""

    def call():
        result = fn()
        torch.cuda.synchronize()  # the current device (kernel_bench has no other)
        return result

    return call


def device_time_ms(fn: Callable[[], object], n: int = 20, sleep_cycles: int = 20_000_000) -> float:
    """Median device time of fn in ms: CUDA events recorded on the current stream around each of
    `n` calls, queued behind a sleep kernel (~10 ms) so the host runs ahead of the GPU."""
    fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    torch.cuda._sleep(sleep_cycles)
    for a, b in zip(starts, ends, strict=True):
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in zip(starts, ends, strict=True))


def device_copy_bandwidth_gbs(device: torch.device, nbytes: int = 1 << 30) -> float:
    """GPU memory bandwidth from a large device-to-device copy, read + write counted (GB/s)."""
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / (time_ms(_synced(lambda: dst.copy_(src))) / 1e3) / 1e9


def cuda_cases(device: torch.device, scale: float = 1.0) -> list[Case]:  # long: a table, as cases()
    """The same workloads with data on the GPU: our numba-cuda kernels vs torch/torchvision CUDA ops
    (the calls themselves; `run` times each for call time and device time). Targets: the kernel
    issue's, on device time."""
    gen = torch.Generator(device=device).manual_seed(0)
    out_list = []
    n_img = max(1, int(16 * scale))
    imgs = torch.randint(0, 256, (n_img, 1080, 1920, 3), dtype=torch.uint8, device=device, generator=gen)
    new_h, new_w, top, left = letterbox_geometry((1080, 1920), (640, 640), True)

    def tv_letterbox(dtype):
        x = imgs.permute(0, 3, 1, 2).flip(1)
        x = F.resize(x, [new_h, new_w], antialias=False)
        x = F.pad(x, [left, top, 640 - new_w - left, 640 - new_h - top], fill=114)
        return F.normalize(F.to_dtype(x, dtype, scale=False), list(MEAN), list(STD))

    read = _rows_read(1080, 360) * 1920 * 3 * n_img
    for dtype, np_dtype in ((torch.float16, np.float16), (torch.float32, np.float32)):
        out = torch.empty((n_img, 3, 640, 640), dtype=dtype, device=device)
        out_list.append(
            Case(
                "letterbox_normalize (cuda)",
                f"{n_img} x 1920x1080 BGR -> 640x640 {np.dtype(np_dtype).name}",
                lambda out=out, d=np_dtype: letterbox_normalize(imgs, (640, 640), MEAN, STD, dtype=d, out=out),
                {"torchvision v2 (cuda)": lambda d=dtype: tv_letterbox(d)},
                read + out.nbytes,
                {"torchvision v2 (cuda)": 2.0},
            )
        )

    anchors = torch.from_numpy(anchor_points(640, 640)).to(device)
    n = len(anchors)
    xy = torch.rand((n, 2), device=device, generator=gen) * 640
    wh = torch.rand((n, 2), device=device, generator=gen) * 120 + 4
    boxes = torch.cat([xy, xy + wh], 1).contiguous()
    scores = torch.rand(n, device=device, generator=gen)
    classes = torch.randint(0, 80, (n,), device=device, generator=gen)
    out_list.append(
        Case(
            "batched_nms (cuda)",
            f"{n} boxes, 80 classes, IoU 0.7",
            lambda: batched_nms(boxes, scores, classes, 0.7),
            {"torchvision.ops.batched_nms (cuda)": lambda: tv_batched_nms(boxes, scores, classes, 0.7)},
            None,
            {"torchvision.ops.batched_nms (cuda)": 3.0},
        )
    )

    rows = max(1, int(64 * scale))
    logits = torch.randn((rows, 152064), device=device, generator=gen)
    out_list.append(
        Case(
            "softmax_topk (cuda)",
            f"{rows} x 152064, k=5",
            lambda: softmax_topk(logits, 5),
            {"torch softmax+topk (cuda)": lambda: peers.torch_softmax_topk(logits, 5)},
            logits.numel() * 4,
            {"torch softmax+topk (cuda)": 2.0},
        )
    )
    out_list.append(
        Case(
            "sample_tokens (cuda)",
            f"{rows} x 152064, T=0.7 top-k 50 top-p 0.9",
            lambda: sample_tokens(logits, 0.7, 50, 0.9),
            {"torch topk+softmax+multinomial (cuda)": lambda: peers.torch_sample_tokens(logits, 0.7, 50, 0.9, gen)},
            logits.numel() * 4,
            {"torch topk+softmax+multinomial (cuda)": 2.0},
        )
    )
    out_list.append(
        Case(
            "sample_tokens greedy (cuda)",
            f"{rows} x 152064, T=0",
            lambda: sample_tokens(logits, 0.0),
            {"torch argmax (cuda)": lambda: logits.argmax(-1)},
            logits.numel() * 4,
            {"torch argmax (cuda)": 1.0},
        )
    )
    seg = torch.randn((max(1, int(8 * scale)), 19, 512, 1024), device=device, generator=gen)
    out_list.append(
        Case(
            "seg_argmax (cuda)",
            f"{seg.shape[0]} x 19 x 512x1024",
            lambda: seg_argmax(seg),
            {"torch argmax (cuda)": lambda: peers.torch_seg_argmax(seg)},
            seg.numel() * 4 + seg.numel() // 19,
            {"torch argmax (cuda)": 1.5},
        )
    )
    return out_list


def machine(device: torch.device | None = None) -> dict:
    """What a kernel table was measured on, so a ratio can be read against its machine: the CPU's
    model, its vector ISA (AVX2, AVX-512, AMX, ...) and whether Numba used Intel's SVML for math
    functions; on a GPU, the GPU's name as well."""
    cpu = detect_cpu()
    name = device_name(device) if device is not None and device.type == "cuda" else cpu.model
    return {
        "name": name,
        "cpu": cpu.model,
        "isa": cpu.isa,
        "svml": bool(numba.config.USING_SVML),
        "numba_threads": numba.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
    }


def run(
    scale: float = 1.0, progress: Callable[[str], None] | None = None, device: torch.device | None = None
) -> tuple[list[Row], float]:
    """Measure every case; returns the rows and the copy bandwidth (GB/s) measured in this run.

    `device` None or CPU: host cases against the copy bandwidth of host memory; a CUDA device: the
    GPU cases against a device-to-device copy.
    """
    on_gpu = device is not None and device.type == "cuda"
    bw = device_copy_bandwidth_gbs(device) if on_gpu else copy_bandwidth_gbs()
    call = _synced if on_gpu else (lambda fn: fn)
    rows: list[Row] = []
    for case in cuda_cases(device, scale) if on_gpu else cases(scale):
        if progress:
            progress(case.name)
        t = time.perf_counter()
        call(case.ours)()
        first = (time.perf_counter() - t) * 1e3
        ours = time_ms(call(case.ours))
        ours_dev = device_time_ms(case.ours) if on_gpu else None
        basis = ours_dev or ours
        gbs = case.bytes_moved / (basis / 1e3) / 1e9 if case.bytes_moved else None
        for peer, fn in case.peers.items():
            peer_ms = time_ms(call(fn))
            peer_dev = device_time_ms(fn) if on_gpu else None
            rows.append(
                Row(
                    case.name,
                    case.shape,
                    first,
                    ours,
                    peer,
                    peer_ms,
                    (peer_dev or peer_ms) / basis,
                    case.targets.get(peer),
                    gbs,
                    gbs / bw if gbs else None,
                    ours_dev,
                    peer_dev,
                )
            )
    return rows, bw
