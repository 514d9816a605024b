"""The LLM benchmark (`modelpower run-llm`): a request in, a result file out.

`run_llm` checks the whole request (lengths against the model's context, precision on the
device, the prompts file, the output folder) before the model is built, then measures every
(batch, prompt length, output length) point in one `ResultSession`; a point that runs out of
memory is recorded as such and the sweep goes on (`llm_runner.measure_llm`).
"""

from __future__ import annotations

import difflib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.errors import UserError
from harness.inputs import check_number, check_writable
from harness.llm.engines import MAX_TEMPERATURE, MIN_TEMPERATURE
from harness.llm.prompts import Prompt
from harness.llm.runner import (
    PromptBatch,
    Workload,
    agreement,
    check_workload,
    compute_precision,
    greedy_reference,
    measure_llm,
    point_bytes,
    synthetic_prompts,
)
from harness.machine.devices import TORCH_DTYPES, check_precision
from harness.measure.memory import check_fits, fits
from harness.measure.window import MAX_WINDOW_S
from harness.results.session import Events, LocalSink, ResultSession
from models.llm import LLM_CONFIGS, LLMConfig


@dataclass
class LLMRequest:
    """Everything `modelpower run-llm` was asked; checked by `run_llm` before the model is built."""

    model: str  # a preset name, a local checkpoint folder or a .gguf file
    batch_sizes: list[int]
    prompt_lens: list[int] | None  # None: 128, or with --prompts each prompt's own length
    output_lens: list[int] | None  # None: each prompt's own (--output-len dataset)
    device: str = "auto"
    precision: str = "bf16"
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    compile: bool | None = None  # None: on a GPU only
    prompts: Path | None = None
    min_duration: float = 5.0
    min_iters: int = 3
    out_dir: Path = Path("results")
    seed: int = 0
    assume_watts: float | None = None
    num_prompts: int | None = None  # sample this many prompts of the file, with the seed
    save_outputs: bool = False
    engines: list[str] = field(default_factory=lambda: ["modelpower"])  # ours and/or "transformers"


def _check_numbers(req: LLMRequest) -> None:
    """Sampling and window options: finite and in range, before the model is built."""
    check_number("--temperature", req.temperature, 0)
    check_number("--top-k", req.top_k, 0, 2**31 - 1)
    check_number("--top-p", req.top_p, 0, 1, above=True)
    check_number("--min-duration", req.min_duration, 0, MAX_WINDOW_S)
    if req.temperature == 0 and (req.top_k != 0 or req.top_p != 1.0):
        raise UserError("--top-k and --top-p shape sampling; temperature 0 is greedy: add --temperature")
    check_number("--min-iters", req.min_iters, 1)
    check_number("--seed", req.seed, 0, 2**32 - 1)
    if req.assume_watts is not None:
        check_number("--assume-watts", req.assume_watts, 0, above=True)


def model_config(model: str) -> LLMConfig:
    """A preset's config, a checkpoint folder's or a GGUF file's; one line naming the presets otherwise."""
    from models.llm_checkpoint import read_config
    from models.llm_gguf import is_gguf, open_gguf, read_gguf_config

    if model in LLM_CONFIGS:
        return LLM_CONFIGS[model]
    if is_gguf(model):
        return read_gguf_config(open_gguf(Path(model)), Path(model).stem)
    if Path(model).exists():
        return read_config(Path(model))
    close = difflib.get_close_matches(model, list(LLM_CONFIGS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown LLM preset or checkpoint folder {model!r}{hint} (presets: {', '.join(LLM_CONFIGS)})")


def load_tokenizer(model: str):
    """(the checkpoint's own tokenizer or None, why there is none). A GGUF whose tokenizer is not
    byte-level BPE, or is malformed, still runs: only text prompts need a tokenizer."""
    from models.llm_gguf import is_gguf, open_gguf
    from models.tokenizer import from_folder, from_gguf

    if model in LLM_CONFIGS:
        return None, f"{model} is a preset with random weights and no tokenizer"
    if is_gguf(model):
        reader = open_gguf(Path(model))
        if reader.fields.get("tokenizer.ggml.tokens") is None:
            return None, f"{model} embeds no vocabulary"
        try:
            return from_gguf(reader), None
        except UserError as e:
            return None, str(e)
    tok = from_folder(Path(model))
    return tok, None if tok else f"{model} has no tokenizer.json"


def prompt_batches(req: LLMRequest, prompts: list[Prompt], b: int, t: int | None, n: int | None,
                   device: torch.device) -> tuple[list[PromptBatch], Workload]:  # fmt: skip
    """The file's prompts in batches of `b` (cycled so that every batch is full): each cut to `t`
    tokens when --prompt-len is given (and then at least that long), else at its own length, left
    padded; output `n` tokens each, or each record's own length (n None). The workload names the
    longest prompt and output, for which the static cache is sized."""
    shortest = min(len(p.ids) for p in prompts)
    if t is not None and shortest < t:
        raise UserError(f"--prompt-len {t} cuts every prompt to {t} tokens: the file has shorter ones ({shortest} "
                        "tokens; without --prompt-len each keeps its own length)")  # fmt: skip
    if n is None and any(p.output_len is None for p in prompts):
        raise UserError("--output-len dataset needs an output length in every record (JSONL output_len, or a "
                        "ShareGPT answer)")  # fmt: skip
    batches = []
    for k in range(-(-len(prompts) // b)):
        rows = [prompts[(k * b + j) % len(prompts)] for j in range(b)]
        ids = [r.ids[:t] if t is not None else r.ids for r in rows]
        index = [(k * b + j) % len(prompts) for j in range(b)]
        batches.append(PromptBatch.of(ids, [n or r.output_len for r in rows], device, index))
    w = Workload(b, max(bt.ids.shape[1] for bt in batches), max(max(bt.out_lens) for bt in batches),
                 req.temperature, req.top_k, req.top_p, req.seed)  # fmt: skip
    return batches, w


INT8_WEIGHTS = "int8 weight-only (per-output-channel scales), bf16 activations"


def _load(req: LLMRequest, cfg: LLMConfig, dev: torch.device):
    """(model, its source, load seconds): seeded random init for a preset, else the checkpoint, in
    the dtype it computes in (bf16 for int8 weight-only: quantized later, by `_prepare`)."""
    from models.llm import build_llm
    from models.llm_checkpoint import load_checkpoint
    from models.llm_gguf import is_gguf, load_gguf

    dtype = TORCH_DTYPES[compute_precision(req.precision)]
    t = time.perf_counter()
    if req.model in LLM_CONFIGS:
        lm = build_llm(cfg, dev, dtype, req.seed)
        source = {"kind": "random-init", "seed": req.seed}
    elif is_gguf(req.model):
        lm, source = load_gguf(Path(req.model), dev, dtype)
    else:
        lm = load_checkpoint(Path(req.model), dev, dtype)
        source = {"kind": "checkpoint", "path": str(Path(req.model).resolve())}
    return lm, source, time.perf_counter() - t


def _prepare(req: LLMRequest, lm, grid, dev: torch.device) -> tuple[dict, object | None]:
    """Lay the loaded model out for decode: fused projections; int8 weight-only if asked (with its
    agreement against the bf16 model on the first fitting point's prompts, greedy); the transformers peer
    on the same tensors if asked. Returns (fields every point records, the peer engine or None)."""
    from harness.llm.engines import TransformersEngine
    from models.llm_linear import quantize_int8

    lm.fuse()
    extra = {}
    if req.precision == "int8":
        extra = {"weights": INT8_WEIGHTS}
        # the agreement runs on the first point that fits (a point that does not is recorded as OOM later)
        fitting = [(w, b) for w, b in grid if not fits(0, point_bytes(lm.cfg, w, torch.bfloat16), dev)]
        ref = bt = None
        if fitting:
            w, batches = fitting[0]
            synthetic = synthetic_prompts(w, lm.cfg.vocab_size, dev)
            full = [w.prompt_len] * w.batch_size, [w.output_len] * w.batch_size
            bt = batches[0] if batches else PromptBatch(synthetic, None, *full)
            ref = greedy_reference(lm, bt, max(bt.out_lens))
        quantize_int8(lm)
        if ref is not None:
            extra["agreement"] = agreement(ref, greedy_reference(lm, bt, max(bt.out_lens)), "bf16")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    peer = TransformersEngine(lm) if "transformers" in req.engines else None
    return extra, peer


def _grid(req: LLMRequest, cfg: LLMConfig, prompts: list[Prompt] | None, dev: torch.device):
    """Every point in order: (workload, its prompt batches or None for synthetic prompts), checked
    against the model's context before anything is loaded."""
    if prompts is None and req.output_lens is None:
        raise UserError("--output-len dataset takes each prompt's own output length: add --prompts")
    grid = []
    for b in req.batch_sizes:
        for t in req.prompt_lens or ([None] if prompts else [128]):
            for n in req.output_lens or [None]:
                if prompts is None:
                    w, batches = Workload(b, t, n, req.temperature, req.top_k, req.top_p, req.seed), None
                else:
                    batches, w = prompt_batches(req, prompts, b, t, n, dev)
                try:
                    check_workload(w, cfg.max_position)
                except UserError as e:
                    longest = prompts is not None and t is None
                    raise UserError(f"{e} (the longest prompt and output of the file)" if longest else str(e)) from None
                grid.append((w, batches))
    return grid


def run_llm(req: LLMRequest, events: Events | None = None) -> ResultSession:
    """Check `req`, build or load the model, measure every point into one result file."""
    from harness.llm.prompts import read_prompt_file
    from harness.measure.energy import select_meter

    events = events or Events()
    _check_numbers(req)
    if req.precision not in (*TORCH_DTYPES, "int8"):
        raise UserError(f"unknown precision {req.precision!r}: use {', '.join(TORCH_DTYPES)} or int8")
    if req.precision == "int8" and "transformers" in req.engines:
        raise UserError("--precision int8 (weight-only) is modelpower's own: run --engine transformers at bf16")
    if (
        "transformers" in req.engines
        and req.temperature > 0
        and not MIN_TEMPERATURE <= req.temperature <= MAX_TEMPERATURE
    ):
        raise UserError(f"--engine transformers samples at --temperature 0 or {MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g} "
                        f"(its probabilities turn NaN beyond), got {req.temperature:g}")  # fmt: skip
    if req.prompts is None and (req.num_prompts is not None):
        raise UserError("--num-prompts samples a prompts file: add --prompts")
    cfg = model_config(req.model)
    tokenizer, why_none = load_tokenizer(req.model)
    prompts = None
    if req.prompts is not None:
        prompts = read_prompt_file(req.prompts, tokenizer, cfg.vocab_size, req.num_prompts, req.seed, why_none)
    sink = LocalSink(req.out_dir)
    dev, why = sink.device(req.device)
    grid = _grid(req, cfg, prompts, dev)
    check_precision(dev, compute_precision(req.precision), "fp32 or bf16")
    check_writable(req.out_dir)
    weights = cfg.param_count() * torch.finfo(TORCH_DTYPES[compute_precision(req.precision)]).bits // 8
    check_fits(f"{cfg.name}'s weights at {req.precision}", 0, weights, dev)
    lm, source, load_s = _load(req, cfg, dev)  # a bad checkpoint is one line, before anything else is said
    events.note(f"device: {why}")
    extra, peer = _prepare(req, lm, grid, dev)
    meter = select_meter(dev.type, dev.index or 0, req.assume_watts)
    meter.idle()
    compile_decode = dev.type == "cuda" if req.compile is None else req.compile
    config = {
        "model": req.model, "batch_sizes": req.batch_sizes, "prompt_lens": req.prompt_lens or "each prompt's own",
        "output_lens": req.output_lens or "each prompt's own", "device": str(dev), "precision": req.precision,
        "compile": compile_decode, "seed": req.seed, "energy_meter": meter.name, "assume_watts": req.assume_watts,
        "prompts": str(req.prompts) if req.prompts else "synthetic token ids", "num_prompts": len(prompts or []),
        "tokenizer": tokenizer.source if tokenizer else None, "engines": req.engines,
    }  # fmt: skip
    with ResultSession(config, sink) as session:
        for (w, batches), engine in itertools.product(grid, req.engines):
            label = f"{cfg.name} batch {w.batch_size}, prompt {w.prompt_len}, output {w.output_len}"
            label += f" ({engine})" if len(req.engines) > 1 else ""
            with events.track(label, 1, "generations") as tick:
                point = measure_llm(lm, w, dev, req.precision, source, req.min_duration, req.min_iters,
                                    compile_decode, meter, batches, load_s, progress=tick,
                                    keep_outputs=req.save_outputs, engine=peer if engine == "transformers" else None,
                                    extra=extra)  # fmt: skip
            if point.outputs and tokenizer is not None:  # invalid ids (NaN weights give -1) are not decoded
                for o in point.outputs:
                    o["text"] = tokenizer.decode([i for i in o["output_ids"] if 0 <= i < cfg.vocab_size])
            session.add(point)
    return session
