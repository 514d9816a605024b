"""A measured point, vision or LLM, as one row of figures: the one adapter that claim checks
(harness/verdicts/claims.py) and report rows (harness/verdicts/report.py) read points through.

An LLM point's compute figures (TFLOPS, MFU) are its prefill's, the compute-bound phase, or for a
served endpoint the whole workload's (at the precision the server was said to run); its
throughput is output tokens/s and its energy per item is joules per output token.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.results.schema import LLMPoint, Point


@dataclass(frozen=True)
class Figures:
    """What a measured point says, the same fields for vision and LLM points (None: not measured)."""

    kind: str  # "vision" or "llm"
    model: str  # as the result names it
    workload: str  # what the compute figures measure: the model, "<model> prefill" or "<model> served"
    device: str
    device_name: str
    precision: str
    batch_size: int
    throughput: float | None  # samples/s, or output tokens/s
    delivered_tflops: float | None
    mfu: float | None
    mfu_precision: str | None  # the precision of the peak the MFU is measured against
    mfu_peak_tflops: float | None
    mfu_peak_source: str | None
    joules_per_item: float | None  # per sample, or per output token
    joules_per_pflop: float | None
    energy: dict | None
    devices: int = 1  # a torchrun aggregate point sums this many devices
    mfu_missing: str | None = None  # why MFU is not computed ("not computed: ..."), where a result says

    @property
    def llm(self) -> bool:
        return self.kind == "llm"


def point_figures(p: Point | LLMPoint) -> Figures:
    """A result point's figures (an LLM point's compute figures: prefill's, or a served endpoint's)."""
    return _llm_figures(p) if isinstance(p, LLMPoint) else _vision_figures(p)


def _vision_figures(p: Point) -> Figures:
    return Figures(
        kind="vision",
        model=p.model,
        workload=p.model,
        device=p.device,
        device_name=p.device_name,
        precision=p.precision,
        batch_size=p.batch_size,
        throughput=p.throughput_sps,
        delivered_tflops=p.delivered_tflops,
        mfu=p.mfu,
        mfu_precision=p.mfu_precision,
        mfu_peak_tflops=p.mfu_peak_tflops,
        mfu_peak_source=p.mfu_peak_source,
        joules_per_item=p.joules_per_sample,
        joules_per_pflop=p.joules_per_pflop,
        energy=p.energy,
        devices=p.world_size if p.aggregate and p.world_size else 1,
    )


def _llm_figures(p: LLMPoint) -> Figures:
    missing = None
    if p.served:  # a served endpoint: the whole workload's FLOPS, at the server's precision (given)
        workload, mfu, mfu_precision = f"{p.model} served", p.served.get("mfu"), p.precision
        tflops = p.served.get("delivered_tflops", p.prefill_tflops)
        missing = p.served.get("mfu_not_computed")
    else:
        workload, mfu, mfu_precision = f"{p.model} prefill", p.prefill_mfu, p.compute_precision or p.precision
        tflops = p.prefill_tflops
    return Figures(
        kind="llm",
        model=p.model,
        workload=workload,
        device=p.device,
        device_name=p.device_name,
        precision=p.precision,
        batch_size=p.batch_size,
        throughput=p.output_tokens_per_s,
        delivered_tflops=tflops,
        mfu=mfu,
        mfu_precision=mfu_precision,
        mfu_peak_tflops=p.mfu_peak_tflops,
        mfu_peak_source=p.mfu_peak_source,
        joules_per_item=p.joules_per_token,
        joules_per_pflop=p.joules_per_pflop,
        energy=p.energy,
        mfu_missing=missing,
    )
