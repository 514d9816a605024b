"""LLM generation benchmark: prefill + fixed-length decode over a static KV cache, timed per token.

The workload is fixed (docs/measurement.md, "LLM metrics"): prompt length, output length (no stop
at EOS), batch size and seed. Prompts are seeded synthetic token ids (or ids from a prompts file).
One warm-up generation (which also compiles the decode step when asked) is timed apart; then
generations repeat until the window's minimum duration and count are both met. The device is
synchronized before every token's timestamp is read (sampling needs the token anyway).
"""

from __future__ import annotations

import itertools
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch

from harness.errors import UserError, first_line
from harness.inputs import SEED
from harness.llm.decode import DecodeGraph, DecodeGraphs, clock_for
from harness.machine.devices import TORCH_DTYPES, device_name
from harness.machine.specs import match_spec
from harness.measure.energy import Meter
from harness.measure.memory import RssPeak, fits, is_oom
from harness.measure.metrics import energy_per_token, nameplate_peak
from harness.measure.stats import latency_stats
from harness.measure.window import Window, timed_window
from harness.results.schema import LLMPoint
from kernels import sample_tokens
from models.llm.flops import decode_flops, prefill_flops
from models.llm.linear import matmul_weight_bytes
from models.llm.model import DecoderLM


@dataclass
class PromptBatch:
    """The prompts of one generation: left padded to the longest, with each row's real lengths."""

    ids: torch.Tensor  # [B, T] token ids (padding: 0)
    pad: torch.Tensor | None  # [B] padding slots per row; None when no row is padded
    lens: list[int]  # real prompt tokens per row
    out_lens: list[int]  # tokens each row asked for; the generation runs max(out_lens) steps
    index: list[int] | None = None  # each row's prompt in the prompts file (0-based, after sampling)

    @staticmethod
    def of(
        rows: list[list[int]], out_lens: list[int], device: torch.device, index: list[int] | None = None
    ) -> PromptBatch:
        t = max(len(r) for r in rows)
        ids = torch.tensor([[0] * (t - len(r)) + r for r in rows], device=device)
        pad = [t - len(r) for r in rows]
        return PromptBatch(
            ids, torch.tensor(pad, device=device) if any(pad) else None, [len(r) for r in rows], list(out_lens), index
        )


@dataclass
class Workload:
    batch_size: int
    prompt_len: int
    output_len: int
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = SEED


def check_workload(w: Workload, max_position: int) -> None:
    if w.batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {w.batch_size}")
    if w.prompt_len < 1:
        raise UserError(f"prompt length must be >= 1, got {w.prompt_len}")
    if w.output_len < 1:
        raise UserError(f"output length must be >= 1, got {w.output_len}")
    if w.prompt_len + w.output_len > max_position:
        raise UserError(
            f"prompt {w.prompt_len} + output {w.output_len} tokens exceed the model's context of {max_position}"
        )


def _sample(logits: torch.Tensor, w: Workload, step, out: torch.Tensor) -> torch.Tensor:
    """Next tokens [B] on the logits' device, through our sample_tokens kernel (into `out` on a GPU).
    Logits come in the model's dtype; the kernel computes in float32 or wider (bf16 logits are
    widened first on a GPU: Numba's CUDA arrays have no bf16). `step`: an int, or a one-element
    tensor on the logits' device (the CUDA-graph step reads it there)."""
    if logits.is_cuda:
        lg = logits.float() if logits.dtype == torch.bfloat16 else logits.contiguous()
        sample_tokens(lg, w.temperature, w.top_k, w.top_p, seed=w.seed, step=step, out=out)
        return out
    step = int(step) if isinstance(step, torch.Tensor) else step
    out.copy_(torch.from_numpy(sample_tokens(logits.float().numpy(), w.temperature, w.top_k, w.top_p, w.seed, step)))
    return out


def generate(
    model: DecoderLM,
    prompts: torch.Tensor,
    w: Workload,
    decode,
    pad: torch.Tensor | None = None,
    cache_len: int | None = None,
    graphs: DecodeGraphs | None = None,
    clock=None,
) -> tuple[float, list[float], torch.Tensor]:
    """One timed generation of `w.output_len` tokens: (start time, timestamp of each generated
    token, tokens [B, out]). `pad`: left padding per row (PromptBatch); `cache_len`: the static
    cache length, kept across generations of different prompt lengths; `graphs`: replay the decode
    step as a captured graph (llm_decode); `clock`: the timestamps' source (llm_decode.clock_for)."""
    device = prompts.device
    b, t = prompts.shape
    cache_len = cache_len or t + w.output_len
    model.setup_cache(b, cache_len)
    out = torch.empty((b, w.output_len), dtype=torch.long, device=device)
    nxt = torch.empty(b, dtype=torch.long, device=device)
    positions = torch.arange(cache_len, device=device)  # no host-to-device copy per step
    clock = clock or clock_for(device, w.output_len)
    with torch.inference_mode():
        graph = None
        if graphs is not None and w.output_len > 1:
            key = (b, cache_len, pad is not None, w.temperature, w.top_k, w.top_p, w.seed)

            def make(capture):
                sample = lambda lg, step, o: _sample(lg, w, step, o)  # noqa: E731
                return DecodeGraph(decode, sample, b, cache_len, pad is not None, device, capture)

            graph = graphs.get(key, make)
        clock.start()
        logits = model(prompts, positions[:t], pad, last_only=True)
        _sample(logits[:, -1], w, 0, nxt)
        out[:, 0] = nxt
        nxt.clamp_(min=0)  # -1 (no valid logit: NaN weights) is recorded in `out`, not fed back
        clock.mark()
        if graph is not None:
            graph.begin(nxt, t, pad)
        for i in range(1, w.output_len):
            if graph is not None:
                graph.replay()
                out[:, i] = graph.sampled
            else:
                logits = decode(nxt.view(b, 1), positions[t + i - 1 : t + i], pad, True)
                _sample(logits[:, -1], w, i, nxt)
                out[:, i] = nxt
                nxt.clamp_(min=0)
            clock.mark()
    t0, stamps = clock.read()
    return t0, stamps, out


def compute_precision(precision: str) -> str:
    """The dtype the activations and the KV cache run in: int8 weight-only and GGUF blocks
    (`native`) compute in bf16 around their weights."""
    return "bf16" if precision in ("int8", "native") else precision


def kv_cache_bytes(cfg, batch: int, length: int, dtype: torch.dtype) -> int:
    """The static KV cache of `batch` sequences of `length` slots (keys and values, every layer)."""
    return 2 * cfg.num_layers * batch * length * cfg.num_kv_heads * cfg.head_dim * (torch.finfo(dtype).bits // 8)


def point_bytes(cfg, w: Workload, dtype: torch.dtype) -> float:
    """What one point allocates beside the weights: the KV cache for prompt + output tokens, and
    prefill's largest activations (logits or the MLP's hidden states for every prompt token)."""
    size = torch.finfo(dtype).bits // 8
    kv = kv_cache_bytes(cfg, w.batch_size, w.prompt_len + w.output_len, dtype)
    prefill = 2 * w.batch_size * w.prompt_len * max(cfg.vocab_size, cfg.intermediate_size) * size
    return kv + prefill


def synthetic_prompts(w: Workload, vocab: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(w.seed)
    return torch.randint(0, vocab, (w.batch_size, w.prompt_len), generator=g).to(device)


def greedy_reference(model: DecoderLM, bt: PromptBatch, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits of the first generated position [B, V], greedy tokens [B, n]) of `bt`: what
    `agreement` compares a transformed model (int8 weights) with."""
    b, t = bt.ids.shape
    model.setup_cache(b, t + n)
    with torch.inference_mode():
        first = model(bt.ids, torch.arange(t, device=bt.ids.device), bt.pad, last_only=True)[:, -1].float()
    _, _, tokens = generate(model, bt.ids, Workload(b, t, n), model, bt.pad)
    return first, tokens


def agreement(ref: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor], against: str) -> dict:
    """How far `new` (greedy_reference of the transformed model) is from `ref` on the same prompts:
    the fraction of generated tokens equal position by position (both free-running greedy), the
    first step where any row differs, and the largest logit error at the first step."""
    (l0, t0), (l1, t1) = ref, new
    same = t0 == t1
    differ = (~same).any(dim=0).nonzero()
    return {
        "against": against,
        "rows": t0.shape[0],
        "tokens": t0.shape[1],
        "greedy_token_agreement": float(same.float().mean()),
        "first_divergence_step": int(differ[0]) if len(differ) else None,
        "max_abs_logit_error_first_step": float((l1 - l0).abs().nan_to_num(nan=float("inf")).max()),
        "max_abs_logit_first_step": float(l0.abs().max()),
    }


def measure_llm(
    model: DecoderLM,
    w: Workload,
    device: torch.device,
    precision: str,
    source: dict,
    min_duration: float,
    min_iters: int,
    compile_decode: bool = False,
    meter: Meter | None = None,
    batches: list[PromptBatch] | None = None,
    load_s: float | None = None,
    progress=None,  # progress(phase, elapsed_s, generations) as the window runs
    keep_outputs: bool = False,
    engine=None,  # a peer engine (llm_engines.TransformersEngine); None: ours
    extra: dict | None = None,  # further LLMPoint fields (weights, agreement) recorded as given
    cuda_graph: bool | None = None,  # our decode step as a CUDA graph; None: on a GPU
) -> LLMPoint:
    """Measure one (batch, prompt, output) point; a point estimated not to fit is not run (status
    "skipped"), one that runs out of memory gets status "oom".

    `batches`: the prompts of each generation in turn (cycled; the warm-up takes the first); None:
    one batch of seeded synthetic prompts of exactly `w.prompt_len` tokens. `w.prompt_len` and
    `w.output_len` are then the longest (padded) prompt and output of all batches: the static cache
    is sized once for them. `keep_outputs`: each batch's generated ids, per row cut to its own
    output length, go into the point (`outputs`)."""
    cfg = model.cfg
    check_workload(w, cfg.max_position)
    base = _point_fields(cfg, w, device, precision, source, compile_decode and engine is None, load_s, engine, extra)
    too_big = fits(0, point_bytes(cfg, w, TORCH_DTYPES[compute_precision(precision)]), device)
    if too_big:
        return LLMPoint(status="skipped", flags=["skipped"], detail=f"would not fit (estimated: {too_big})", **base)
    if batches is None:
        ids = synthetic_prompts(w, cfg.vocab_size, device)
        batches = [PromptBatch(ids, None, [w.prompt_len] * w.batch_size, [w.output_len] * w.batch_size)]
    cache_len = w.prompt_len + w.output_len
    use_graph = engine is None and (device.type == "cuda" if cuda_graph is None else cuda_graph)
    graphs = DecodeGraphs() if use_graph else None
    decode = model
    if compile_decode and engine is None:  # our own graph capture replaces Inductor's CUDA graphs
        mode = "reduce-overhead" if device.type == "cuda" and not use_graph else "default"
        decode = torch.compile(model, mode=mode, fullgraph=True, dynamic=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss = RssPeak() if device.type != "cuda" else None  # the host's peak over this point's window alone

    def run(k: int):
        bt = batches[k % len(batches)]
        wk = replace(w, output_len=max(bt.out_lens))
        if engine is not None:
            return (*engine.generate(bt.ids, wk, bt.pad, cache_len), bt)
        return (*generate(model, bt.ids, wk, decode, bt.pad, cache_len, graphs), bt)

    try:
        t = time.perf_counter()
        run(0)  # warm-up (compile, graph capture), apart from the window; a padded batch and an
        other = next((k for k, bt in enumerate(batches) if (bt.pad is None) != (batches[0].pad is None)), None)
        if other is not None:  # unpadded one are captured apart: both before the window
            run(other)
        compile_s = time.perf_counter() - t
        rules = Window(0, min_duration, min_iters)  # no warm-up left: it ran just above, as compile_s
        with rss or nullcontext():
            timed = timed_window(run, rules, meter or Meter(), progress, "generations")
        runs, window, reading = timed.results, timed.seconds, timed.reading
    except Exception as e:
        if not is_oom(e):
            raise
        return LLMPoint(status="oom", flags=["oom"], detail=f"out of memory: {first_line(e, 200)}", **base)
    point = _metrics(model, w, device, precision, base, compile_s, runs, window, reading, rss)
    point.timestamps = engine.timestamps if engine else clock_for(device, 0).kind
    eager = "torch.compile" if decode is not model else "eager"
    point.decode_step = engine.decode_step if engine else (graphs.describe(eager) if graphs else eager)
    if graphs and graphs.off:
        point.flags.append("cuda_graph_off")
    if keep_outputs:  # every batch once: the window's runs, then (untimed) any batch it did not reach
        seen = runs[: len(batches)] + [run(k) for k in range(len(runs), len(batches))]
        point.outputs = [
            {"prompt_tokens": bt.lens[r], "output_ids": out[r, : bt.out_lens[r]].tolist()}
            | ({"prompt_index": bt.index[r]} if bt.index else {})
            for _, _, out, bt in seen
            for r in range(len(bt.lens))
        ]  # a batch cycled past the end of the file repeats prompts: prompt_index says which
    return point


def _point_fields(cfg, w: Workload, device, precision, source, compiled, load_s, engine, extra) -> dict:
    """The fields every point of this workload records, measured or not (an OOM point has only these)."""
    dtype = TORCH_DTYPES[compute_precision(precision)]
    return (
        dict(
            kind="llm",
            model=cfg.name,
            source=source,
            device=str(device),
            device_name=device_name(device),
            precision=precision,
            batch_size=w.batch_size,
            prompt_len=w.prompt_len,
            output_len=w.output_len,
            sampling={"temperature": w.temperature, "top_k": w.top_k, "top_p": w.top_p, "seed": w.seed},
            params=cfg.param_count(),
            compiled=compiled,
            load_s=load_s,
            engine=engine.name if engine else "modelpower",
            compute_precision=compute_precision(precision),
            kv_cache_bytes=kv_cache_bytes(cfg, w.batch_size, w.prompt_len + w.output_len, dtype),
        )
        | (extra or {})
        | ({"engine_build": engine.build} if hasattr(engine, "build") else {})
    )


def _metrics(model, w, device, precision, base, compile_s, runs, window, reading, rss: RssPeak | None) -> LLMPoint:
    """Every figure from the window's generations; only real tokens count (not padding, and not the
    steps a row runs past its own output length while the longest row finishes). Peak memory: on a
    GPU torch's max allocated since this point's warm-up; on the host the process's RSS sampled over
    this point's timed window (`rss`), each point its own."""
    cfg = model.cfg
    ttft = [stamps[0] - t0 for t0, stamps, _, _ in runs]
    itl = [bb - a for _, stamps, _, _ in runs for a, bb in itertools.pairwise(stamps)]
    decode_s = [stamps[-1] - stamps[0] for _, stamps, _, _ in runs]
    valid = all(bool(((out >= 0) & (out < cfg.vocab_size)).all()) for _, _, out, _ in runs)
    prompt_tokens = sum(sum(bt.lens) for *_, bt in runs)
    out_tokens = sum(sum(bt.out_lens) for *_, bt in runs)
    decode_tokens = sum(sum(n - 1 for n in bt.out_lens) for *_, bt in runs)
    p_flops = sum(prefill_flops(cfg, t) for *_, bt in runs for t in bt.lens)
    d_flops = sum(
        decode_flops(cfg, t + i + 1)
        for *_, bt in runs
        for t, n in zip(bt.lens, bt.out_lens, strict=True)
        for i in range(1, n)
    )
    peak, peak_src = nameplate_peak(device, compute_precision(precision))
    total_ttft = float(np.sum(ttft))
    prefill_tflops = p_flops / total_ttft / 1e12
    dtype_bytes = torch.finfo(TORCH_DTYPES[compute_precision(precision)]).bits // 8
    b = w.batch_size
    mean_prompt = prompt_tokens / (len(runs) * b)
    mean_out = out_tokens / (len(runs) * b)
    mean_ctx = mean_prompt + (mean_out + 1) / 2
    kv_bytes = 2 * cfg.num_layers * b * mean_ctx * cfg.num_kv_heads * cfg.head_dim * dtype_bytes
    step_bytes = matmul_weight_bytes(model) + kv_bytes  # the bytes actually read: int8 weights count 1 each
    steps = sum(len(stamps) - 1 for _, stamps, _, _ in runs)
    total_decode_s = float(np.sum(decode_s))
    decode_steps_per_s = steps / total_decode_s if steps else None
    gbs = step_bytes * decode_steps_per_s / 1e9 if decode_steps_per_s else None
    row = match_spec(device_name(device)) if device.type == "cuda" else None
    bw = row.bandwidth_gbs if row else None
    flops_done = p_flops + d_flops
    j = reading.joules  # measured, or an estimate labelled as one (None: neither)
    if device.type == "cuda":
        mem, scope = torch.cuda.max_memory_allocated(device) / 2**30, "GPU: torch max_memory_allocated"
    elif rss is not None and rss.peak is not None:
        mem, scope = rss.peak / 2**30, rss.scope
    else:
        mem, scope = None, "host: not measured (the process's RSS is not readable here: no /proc/self/statm)"
    flags = ([] if valid else ["invalid_tokens"]) + reading.flags()
    padded = any(bt.pad is not None for *_, bt in runs)
    return LLMPoint(
        **base,
        status="ok",
        compile_s=compile_s,
        runs=len(runs),
        window_s=window,
        ttft=latency_stats(ttft),
        itl=latency_stats(itl) if itl else None,
        tpot_ms=total_decode_s / steps * 1e3 if steps else None,
        prefill_tokens_per_s=prompt_tokens / total_ttft,
        decode_tokens_per_s=decode_tokens / total_decode_s if steps else None,
        total_tokens_per_s=(prompt_tokens + out_tokens) / window,
        output_tokens_per_s=out_tokens / window,
        requests_per_s=len(runs) * b / window,
        prefill_flops_per_token=p_flops / prompt_tokens,
        decode_flops_per_token=d_flops / decode_tokens if decode_tokens else None,
        prefill_tflops=prefill_tflops,
        prefill_mfu=prefill_tflops / peak if peak else None,
        mfu_peak_tflops=peak,
        mfu_peak_source=peak_src,
        decode_bytes_per_step=step_bytes,
        decode_gbs=gbs,
        decode_mbu=gbs / bw if gbs and bw else None,
        mbu_bandwidth_gbs=bw,
        peak_memory_gib=mem,
        peak_memory_scope=scope,
        energy=reading.to_dict(),
        **energy_per_token(j, out_tokens, flops_done),
        tokens_checked={"valid_ids": valid, "shape": [len(runs), b, w.output_len]},
        flags=flags,
        prompt_tokens_mean=mean_prompt,
        output_tokens_mean=mean_out,
        padding="left, with an attention mask" if padded else None,
    )
