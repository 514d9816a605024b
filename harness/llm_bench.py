"""The LLM benchmark (`modelpower run-llm`): a request in, a result file out.

`run_llm` checks the whole request (lengths against the model's context, precision on the
device, the prompts file, the output folder) before the model is built, then measures every
(batch, prompt length, output length) point in one `ResultSession`; a point that runs out of
memory is recorded as such and the sweep goes on (`llm_runner.measure_llm`).
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.devices import TORCH_DTYPES, check_precision
from harness.errors import UserError
from harness.llm_runner import Workload, check_workload, measure_llm
from harness.memory import check_fits
from harness.session import MAX_WINDOW_S, Events, LocalSink, ResultSession, check_number, check_writable
from models.llm import LLM_CONFIGS, LLMConfig


@dataclass
class LLMRequest:
    """Everything `modelpower run-llm` was asked; checked by `run_llm` before the model is built."""

    model: str  # a preset name or a local checkpoint folder
    batch_sizes: list[int]
    prompt_lens: list[int]
    output_lens: list[int]
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
    """A preset's config, or a checkpoint folder's; one line naming the presets otherwise."""
    from models.llm_checkpoint import read_config

    if model in LLM_CONFIGS:
        return LLM_CONFIGS[model]
    if Path(model).exists():
        return read_config(Path(model))
    close = difflib.get_close_matches(model, list(LLM_CONFIGS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown LLM preset or checkpoint folder {model!r}{hint} (presets: {', '.join(LLM_CONFIGS)})")


def read_prompts(path: Path, vocab: int) -> list[list[int]]:
    """A prompts file: one line of space-separated token ids in [0, vocab) per prompt."""
    from harness.files import read_text

    lines = [ln.split() for ln in read_text(path, "prompts file").splitlines() if ln.strip()]
    try:
        ids = [[int(v) for v in ln] for ln in lines]
    except ValueError:
        raise UserError(f"prompts file {path}: every line must be space-separated token ids") from None
    if not ids or any(not (0 <= v < vocab) for ln in ids for v in ln):
        raise UserError(f"prompts file {path}: needs at least one line of token ids in [0, {vocab})")
    return ids


def prompt_rows(file_prompts: list[list[int]], batch_size: int, prompt_len: int) -> list[list[int]]:
    """The prompts of one batch: the file's lines in turn, each cut to `prompt_len` tokens."""
    rows = [file_prompts[i % len(file_prompts)][:prompt_len] for i in range(batch_size)]
    if min(len(r) for r in rows) < prompt_len:
        raise UserError(f"prompts file lines are shorter than --prompt-len {prompt_len}")
    return rows


def _load(req: LLMRequest, cfg: LLMConfig, dev: torch.device):
    """(model, its source, load seconds): seeded random init for a preset, else the checkpoint."""
    from models.llm import build_llm
    from models.llm_checkpoint import load_checkpoint

    t = time.perf_counter()
    if req.model in LLM_CONFIGS:
        lm = build_llm(cfg, dev, TORCH_DTYPES[req.precision], req.seed)
        source = {"kind": "random-init", "seed": req.seed}
    else:
        lm = load_checkpoint(Path(req.model), dev, TORCH_DTYPES[req.precision])
        source = {"kind": "checkpoint", "path": str(Path(req.model).resolve())}
    return lm, source, time.perf_counter() - t


def run_llm(req: LLMRequest, events: Events | None = None) -> ResultSession:
    """Check `req`, build or load the model, measure every point into one result file."""
    from harness.energy import select_meter

    events = events or Events()
    _check_numbers(req)
    if req.precision not in TORCH_DTYPES:
        raise UserError(f"unknown precision {req.precision!r}: use {', '.join(TORCH_DTYPES)}")
    cfg = model_config(req.model)
    file_prompts = read_prompts(req.prompts, cfg.vocab_size) if req.prompts else None
    grid = [(b, t, n) for b in req.batch_sizes for t in req.prompt_lens for n in req.output_lens]
    for b, t, n in grid:
        check_workload(Workload(b, t, n), cfg.max_position)
        if file_prompts is not None:
            prompt_rows(file_prompts, b, t)
    sink = LocalSink(req.out_dir)
    dev, why = sink.device(req.device)
    check_precision(dev, req.precision, "fp32 or bf16")
    check_writable(req.out_dir)
    weights = cfg.param_count() * torch.finfo(TORCH_DTYPES[req.precision]).bits // 8
    check_fits(f"{cfg.name}'s weights at {req.precision}", 0, weights, dev)
    lm, source, load_s = _load(req, cfg, dev)  # a bad checkpoint is one line, before anything else is said
    events.note(f"device: {why}")
    meter = select_meter(dev.type, dev.index or 0, req.assume_watts)
    meter.idle()
    compile_decode = dev.type == "cuda" if req.compile is None else req.compile
    config = {
        "model": req.model, "batch_sizes": req.batch_sizes, "prompt_lens": req.prompt_lens,
        "output_lens": req.output_lens, "device": str(dev), "precision": req.precision, "compile": compile_decode,
        "seed": req.seed, "energy_meter": meter.name, "assume_watts": req.assume_watts,
        "prompts": str(req.prompts) if req.prompts else "synthetic token ids",
    }  # fmt: skip
    with ResultSession(config, sink) as session:
        for b, t, n in grid:
            w = Workload(b, t, n, req.temperature, req.top_k, req.top_p, req.seed)
            prompts = None if file_prompts is None else torch.tensor(prompt_rows(file_prompts, b, t), device=dev)
            with events.track(f"{cfg.name} batch {b}, prompt {t}, output {n}", 1, "generations") as tick:
                point = measure_llm(lm, w, dev, req.precision, source, req.min_duration, req.min_iters,
                                    compile_decode, meter, prompts, load_s, progress=tick)  # fmt: skip
            session.add(point)
    return session
