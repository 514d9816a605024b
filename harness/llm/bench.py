"""The LLM benchmark (`modelpower run-llm`): a request in, a result file out.

`run_llm` checks the whole request (each part checks itself; lengths against the model's context,
precision on the device, the prompts file, the output folder) and resolves the model source once
(harness/llm/source.py) before the model is built, then measures every (batch, prompt length,
output length) point in one `ResultSession`; a point that runs out of memory is recorded as such
and the sweep goes on (`runner.measure_llm`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from harness.errors import UserError
from harness.inputs import check_number, check_writable
from harness.llm.engines import ENGINE, MAX_TEMPERATURE, MIN_TEMPERATURE, LlamaCppEngine, TransformersEngine
from harness.llm.prompts import Prompt, read_prompt_file
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
from harness.llm.source import ModelSource, load_model, resolve_model
from harness.machine.devices import TORCH_DTYPES, check_precision
from harness.measure.energy import select_meter
from harness.measure.memory import check_fits, fits
from harness.measure.window import Window
from harness.results.session import RESULTS_DIR, Events, LocalSink, ResultSession
from models.llm.config import LLMConfig
from models.llm.linear import quantize_int8

LLM_WINDOW = Window(warmup=1, min_duration=5.0, min_iters=3)  # one warm-up generation (compile, capture)


@dataclass(frozen=True)
class Sampling:
    """How each next token is drawn; a field left None was not given (Workload's default: greedy)."""

    temperature: float | None = None
    top_k: int | None = None  # 0: all tokens
    top_p: float | None = None  # 1: off

    @property
    def values(self) -> tuple[float, int, float]:
        """(temperature, top_k, top_p) with the defaults filled in."""
        t, k, p = self.temperature, self.top_k, self.top_p
        return (
            Workload.temperature if t is None else t,
            Workload.top_k if k is None else k,
            Workload.top_p if p is None else p,
        )

    def check(self, engines: list[str]) -> None:
        temperature, top_k, top_p = self.values
        check_number("--temperature", temperature, 0)
        check_number("--top-k", top_k, 0, 2**31 - 1)
        check_number("--top-p", top_p, 0, 1, above=True)
        if temperature == 0 and (self.top_k is not None or self.top_p is not None):
            raise UserError("--top-k and --top-p shape sampling; temperature 0 is greedy: add --temperature")
        if "llama.cpp" in engines and temperature > 0:
            raise UserError("--engine llama.cpp runs greedy here (the argmax of each row's logits): drop --temperature")
        if "transformers" in engines and temperature > 0 and not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
            raise UserError(
                f"--engine transformers samples at --temperature 0 or {MIN_TEMPERATURE:g}.."
                f"{MAX_TEMPERATURE:g} (its probabilities turn NaN beyond), "
                f"got {temperature:g}"
            )


@dataclass
class LLMRequest:
    """Everything `modelpower run-llm` was asked; checked by `run_llm` before the model is built."""

    model: str  # a preset name, a local checkpoint folder or a .gguf file
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    prompt_lens: list[int] | None = None  # None: PROMPT_LEN, or with --prompts each prompt's own length
    output_lens: list[int] | None = None  # None: OUTPUT_LEN
    output_from_dataset: bool = False  # --output-len dataset: each record's own output length
    device: str = "auto"
    precision: str = "bf16"
    sampling: Sampling = field(default_factory=Sampling)
    window: Window = LLM_WINDOW
    compile: bool | None = None  # None: on a GPU only
    prompts: Path | None = None
    num_prompts: int | None = None  # sample this many prompts of the file, with the seed
    save_outputs: bool = False
    out_dir: Path = RESULTS_DIR
    seed: int = Workload.seed
    assume_watts: float | None = None
    engines: list[str] = field(default_factory=lambda: [ENGINE])  # ours and/or "transformers"

    PROMPT_LEN: ClassVar[int] = 128
    OUTPUT_LEN: ClassVar[int] = 64

    def workload(self, b: int, t: int | None, n: int | None) -> Workload:
        return Workload(b, t, n, *self.sampling.values, self.seed)

    def check(self) -> None:
        """Every option on its own, before the model is read: numbers, sampling, precision, engines."""
        self.window.check()
        check_number("--seed", self.seed, 0, 2**32 - 1)
        if self.assume_watts is not None:
            check_number("--assume-watts", self.assume_watts, 0, above=True)
        if self.precision not in (*TORCH_DTYPES, "int8", "native"):
            raise UserError(f"unknown precision {self.precision!r}: use {', '.join(TORCH_DTYPES)}, int8 or native")
        if self.precision in ("int8", "native") and "transformers" in self.engines:
            what = "weight-only" if self.precision == "int8" else "GGUF blocks as stored"
            raise UserError(
                f"--precision {self.precision} ({what}) is modelpower's own: run --engine transformers at bf16"
            )
        self.sampling.check(self.engines)
        if self.prompts is None and self.num_prompts is not None:
            raise UserError("--num-prompts samples a prompts file: add --prompts")
        if self.prompts is None and self.output_from_dataset:
            raise UserError("--output-len dataset takes each prompt's own output length: add --prompts")


def prompt_batches(
    req: LLMRequest, prompts: list[Prompt], b: int, t: int | None, n: int | None, device: torch.device
) -> tuple[list[PromptBatch], Workload]:
    """The file's prompts in batches of `b` (cycled so that every batch is full): each cut to `t`
    tokens when --prompt-len is given (and then at least that long), else at its own length, left
    padded; output `n` tokens each, or each record's own length (n None). The workload names the
    longest prompt and output, for which the static cache is sized."""
    shortest = min(len(p.ids) for p in prompts)
    if t is not None and shortest < t:
        raise UserError(
            f"--prompt-len {t} cuts every prompt to {t} tokens: the file has shorter ones ({shortest} "
            "tokens; without --prompt-len each keeps its own length)"
        )
    if n is None and any(p.output_len is None for p in prompts):
        raise UserError(
            "--output-len dataset needs an output length in every record (JSONL output_len, or a ShareGPT answer)"
        )
    batches = []
    for k in range(-(-len(prompts) // b)):
        rows = [prompts[(k * b + j) % len(prompts)] for j in range(b)]
        ids = [r.ids[:t] if t is not None else r.ids for r in rows]
        index = [(k * b + j) % len(prompts) for j in range(b)]
        batches.append(PromptBatch.of(ids, [n or r.output_len for r in rows], device, index))
    w = req.workload(b, max(bt.ids.shape[1] for bt in batches), max(max(bt.out_lens) for bt in batches))
    return batches, w


INT8_WEIGHTS = "int8 weight-only (per-output-channel scales), bf16 activations"
NATIVE_WEIGHTS = "GGUF blocks as stored (matmuls and embedding), bf16 activations and KV cache"


def _prepare(req: LLMRequest, lm, grid, dev: torch.device) -> tuple[dict, dict]:
    """Lay the loaded model out for decode: fused projections; int8 weight-only if asked (with its
    agreement against the bf16 model on the first fitting point's prompts, greedy); the transformers peer
    on the same tensors, llama.cpp on the same file, if asked. Returns (fields every point records, the peer
    engines by name)."""
    lm.fuse()
    extra = {"weights": NATIVE_WEIGHTS} if req.precision == "native" else {}
    if req.precision == "int8":
        extra = {"weights": INT8_WEIGHTS}
        # the agreement runs on the first point that fits (one that does not is recorded as skipped later)
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
    peers = {}
    if "transformers" in req.engines:
        peers["transformers"] = TransformersEngine(lm)
    if "llama.cpp" in req.engines:
        peers["llama.cpp"] = LlamaCppEngine(Path(req.model), torch.get_num_threads())
    return extra, peers


def _grid(req: LLMRequest, cfg: LLMConfig, prompts: list[Prompt] | None, dev: torch.device):
    """Every point in order: (workload, its prompt batches or None for synthetic prompts), checked
    against the model's context before anything is loaded."""
    outputs = [None] if req.output_from_dataset else req.output_lens or [req.OUTPUT_LEN]
    grid = []
    for b in req.batch_sizes:
        for t in req.prompt_lens or ([None] if prompts else [req.PROMPT_LEN]):
            for n in outputs:
                if prompts is None:
                    w, batches = req.workload(b, t, n), None
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
    events = events or Events()
    req.check()
    src = resolve_model(req.model)
    cfg = src.cfg
    prompts = None
    if req.prompts is not None:
        prompts = read_prompt_file(
            req.prompts, src.tokenizer, cfg.vocab_size, req.num_prompts, req.seed, src.why_no_tokenizer
        )
    sink = LocalSink(req.out_dir)
    dev, why = sink.device(req.device)
    grid = _grid(req, cfg, prompts, dev)
    dtype = TORCH_DTYPES[compute_precision(req.precision)]
    check_precision(dev, compute_precision(req.precision), "fp32 or bf16")
    as_stored = src.kind == "gguf" and req.precision == "native" and dev.type == "cpu"
    if "llama.cpp" in req.engines and not as_stored:
        raise UserError(
            "--engine llama.cpp runs a GGUF file as stored on the CPU: give a .gguf model with "
            "--precision native --device cpu"
        )
    if req.precision == "native":
        if req.compile:
            raise UserError("--compile does not apply to --precision native: its decode step is one Numba call")
        if src.kind != "gguf":
            raise UserError("--precision native keeps a GGUF file's quantized blocks: give a .gguf model")
        if dev.type != "cpu":
            raise UserError("--precision native runs on the CPU only (Numba CPU kernels): add --device cpu")
    check_writable(req.out_dir)
    per_param = 9 / 8 if req.precision == "native" else torch.finfo(dtype).bits / 8  # Q8_0: 8.5 bits, the widest
    weights = int(cfg.param_count() * per_param)
    if req.precision == "native":  # + prefill's bf16 buffer for the largest matrix (the LM head or the MLP's)
        weights += 2 * cfg.hidden_size * max(cfg.vocab_size, 2 * cfg.intermediate_size)
    check_fits(f"{cfg.name}'s weights at {req.precision}", 0, weights, dev)
    # a bad checkpoint is one line, before anything else
    lm, source, load_s = load_model(src, dev, dtype, req.seed, native=req.precision == "native")
    events.note(f"device: {why}")
    extra, peers = _prepare(req, lm, grid, dev)
    meter = select_meter(dev.type, dev.index or 0, req.assume_watts)
    meter.idle()
    compile_decode = dev.type == "cuda" if req.compile is None else req.compile
    config = _config(req, src, dev, compile_decode, meter.name, prompts)
    with ResultSession(config, sink) as session:
        for (w, batches), engine in itertools.product(grid, req.engines):
            label = f"{cfg.name} batch {w.batch_size}, prompt {w.prompt_len}, output {w.output_len}"
            label += f" ({engine})" if len(req.engines) > 1 else ""
            with events.track(label, 1, "generations") as tick:
                point = measure_llm(
                    lm,
                    w,
                    dev,
                    req.precision,
                    source,
                    req.window.min_duration,
                    req.window.min_iters,
                    compile_decode,
                    meter,
                    batches,
                    load_s,
                    progress=tick,
                    keep_outputs=req.save_outputs,
                    engine=peers.get(engine),
                    extra=extra,
                )
            if point.outputs and src.tokenizer is not None:  # invalid ids (NaN weights give -1) are not decoded
                for o in point.outputs:
                    o["text"] = src.tokenizer.decode([i for i in o["output_ids"] if 0 <= i < cfg.vocab_size])
            session.add(point)
    return session


def _config(
    req: LLMRequest, src: ModelSource, dev: torch.device, compile_decode: bool, meter: str, prompts: list[Prompt] | None
) -> dict:
    """The result's `config`: the request as it was resolved."""
    each = "each prompt's own"
    return {
        "model": req.model,
        "batch_sizes": req.batch_sizes,
        "prompt_lens": req.prompt_lens or (each if prompts else [req.PROMPT_LEN]),
        "output_lens": each if req.output_from_dataset else req.output_lens or [req.OUTPUT_LEN],
        "device": str(dev),
        "precision": req.precision,
        "compile": compile_decode,
        "seed": req.seed,
        "energy_meter": meter,
        "assume_watts": req.assume_watts,
        "prompts": str(req.prompts) if req.prompts else "synthetic token ids",
        "num_prompts": len(prompts or []),
        "tokenizer": src.tokenizer.source if src.tokenizer else None,
        "engines": req.engines,
    }
