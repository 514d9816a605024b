"""`modelpower run-llm`: the LLM generation benchmark (harness/llm/bench.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
    AssumeWattsOpt,
    DeviceOpt,
    OutOpt,
    PromptsOpt,
    SeedOpt,
    cli_events,
    finish_run,
    given,
    out,
    user_errors,
)
from harness.errors import UserError
from harness.inputs import SEED, check_writable, parse_sizes
from harness.results.session import RESULTS_DIR
from models.llm.config import LLM_CONFIGS


@user_errors
def run_llm(
    model: Annotated[
        str,
        typer.Argument(
            help="An LLM preset (llm-tiny, qwen2-0.5b, ... llama3-70b), a local HF checkpoint folder or a .gguf file."
        ),
    ],
    batch_size: Annotated[
        list[str] | None, typer.Option("--batch-size", "-b", help="Batch size; a list sweeps: -b 1,8,32 [1].")
    ] = None,
    prompt_len: Annotated[
        list[str] | None,
        typer.Option(help="Prompt tokens; a list sweeps: 128,512 [128; with --prompts: each prompt's own length]."),
    ] = None,
    output_len: Annotated[
        list[str] | None,
        typer.Option(help="Generated tokens (no stop at EOS); a list sweeps; 'dataset': each record's own [64]."),
    ] = None,
    device: DeviceOpt = "auto",
    precision: Annotated[
        str | None,
        typer.Option(
            help="fp32, fp16, bf16, int8 (weight-only, per-channel scales, bf16 activations), or native "
            "(a GGUF's quantized blocks as stored, CPU) [bf16]."
        ),
    ] = None,
    engine: Annotated[
        list[str] | None,
        typer.Option(
            help="Generation engine(s): modelpower, transformers (generate() on the same weights), llama.cpp "
            "(the same GGUF, with --precision native); a list runs each on every point [modelpower]."
        ),
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy [0].")] = None,
    top_k: Annotated[int | None, typer.Option(help="Top-k (0 = all tokens) [0].")] = None,
    top_p: Annotated[float | None, typer.Option(help="Top-p (1 = off) [1].")] = None,
    compile: Annotated[
        bool | None, typer.Option(help="torch.compile the decode step [default: on a GPU only].")
    ] = None,
    prompts: PromptsOpt = None,
    num_prompts: Annotated[int | None, typer.Option(help="Sample this many prompts of the file (with --seed).")] = None,
    save_outputs: Annotated[
        bool, typer.Option(help="Keep each prompt's generated token ids (and text) in the result.")
    ] = False,
    min_duration: Annotated[float | None, typer.Option(help="Minimum seconds per measurement window [5].")] = None,
    min_iters: Annotated[int | None, typer.Option(help="Minimum generations per point [3].")] = None,
    out_dir: OutOpt = RESULTS_DIR,
    seed: SeedOpt = SEED,
    assume_watts: AssumeWattsOpt = None,
) -> None:
    """Benchmark LLM generation: TTFT, inter-token latency, tokens/s, prefill MFU, decode MBU, energy."""
    from harness.cli.tables import llm_table
    from harness.llm.bench import LLM_WINDOW, LLMRequest, Sampling, run_llm
    from harness.llm.engines import parse_engines

    window = replace(LLM_WINDOW, **given(min_duration=min_duration, min_iters=min_iters))
    req = LLMRequest(
        model=model,
        device=device,
        window=window,
        sampling=Sampling(temperature, top_k, top_p),
        engines=parse_engines(engine),
        compile=compile,
        prompts=prompts,
        num_prompts=num_prompts,
        save_outputs=save_outputs,
        out_dir=out_dir,
        seed=seed,
        assume_watts=assume_watts,
        output_from_dataset=output_len == ["dataset"],
        **given(
            batch_sizes=parse_sizes(batch_size) if batch_size else None,
            precision=precision,
            prompt_lens=parse_sizes(prompt_len, "prompt length") if prompt_len else None,
            output_lens=parse_sizes(output_len, "output length") if output_len and output_len != ["dataset"] else None,
        ),
    )
    session = run_llm(req, cli_events(window.min_duration, window.min_iters))
    out.print(llm_table(session.result.points))
    for p in session.result.points:
        if p.detail:
            out.print(f"{p.model} batch {p.batch_size}, prompt {p.prompt_len}, output {p.output_len}: {p.detail}")
    finish_run(session)


@user_errors
def make_gguf(
    preset: Annotated[
        str, typer.Argument(help="An LLM preset (llm-tiny, qwen2-0.5b, ...): its shape, random weights.")
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The .gguf file to write.")],
    qtype: Annotated[
        str,
        typer.Option(
            "--type",
            help="Matrix type: F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 or Q4_K [Q8_0]; matrices "
            "whose width is not a whole number of blocks fall back (Q4_K to Q4_1, others to Q8_0).",
        ),
    ] = "Q8_0",
    seed: SeedOpt = SEED,
) -> None:
    """Write a GGUF file of a preset's shape with seeded random weights, for `run-llm --precision native
    --engine modelpower,llama.cpp` without downloading a model (llama.cpp runs its token ids)."""
    import torch

    from harness.measure.memory import check_fits
    from models.llm.gguf_write import TYPES
    from models.llm.gguf_write import make_gguf as write

    if preset not in LLM_CONFIGS:
        raise UserError(f"unknown LLM preset {preset!r} (presets: {', '.join(LLM_CONFIGS)})")
    if qtype not in TYPES:
        raise UserError(f"--type {qtype!r} cannot be written: use {', '.join(TYPES)}")
    if out_file.suffix.lower() != ".gguf" or out_file.is_dir():
        raise UserError(f"--out {out_file} must name a .gguf file")
    check_writable(out_file.parent, "the GGUF file")
    cfg = LLM_CONFIGS[preset]
    check_fits(f"{preset}'s float32 weights and their quantized copy", 0, cfg.param_count() * 6, torch.device("cpu"))
    out.print(f"writing {preset} ({cfg.param_count() / 1e6:,.0f} M parameters, seed {seed}) as {qtype} to {out_file}")
    counts = write(preset, out_file, qtype, seed)
    kinds = ", ".join(f"{n} {k}" for k, n in counts.items())
    out.print(f"written: {out_file} ({out_file.stat().st_size / 1e6:,.1f} MB; tensors: {kinds})")
