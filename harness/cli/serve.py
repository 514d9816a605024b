"""`modelpower serve-bench`: a running OpenAI-compatible server under load (harness/serve/bench.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated

import typer

from harness.cli.common import AssumeWattsOpt, OutOpt, PromptsOpt, cli_events, finish_run, given, out, user_errors
from harness.errors import UserError
from harness.inputs import SEED, parse_sizes, split_list
from harness.results.session import RESULTS_DIR


def _rates(values: list[str]) -> list[float]:
    """'2,8,inf' and repeated flags -> [2.0, 8.0, inf]; each > 0."""
    rates = []
    for part in split_list(values, "--request-rate"):
        part = part.lower()
        try:
            r = float(part)
        except ValueError:
            raise UserError(f"--request-rate must be a number of requests/s or inf, got {part!r}") from None
        if math.isnan(r) or r <= 0:
            raise UserError(f"--request-rate must be > 0 (or inf), got {part!r}")
        rates.append(r)
    return list(dict.fromkeys(rates))


@user_errors
def serve_bench(
    url: Annotated[
        str, typer.Argument(help="The server's base URL, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine).")
    ],
    model: Annotated[str, typer.Option(help="The model name the server serves (its /v1/models id).")],
    api: Annotated[str | None, typer.Option(help="completions (/v1/completions) or chat [completions].")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="The model's HF folder or GGUF file: counts tokens when the server sends no usage, makes "
            "synthetic prompts, and gives FLOPs per token (delivered TFLOPS, MFU, J/PFLOP)."
        ),
    ] = None,
    concurrency: Annotated[
        list[str] | None, typer.Option(help="Closed loop: requests in flight; a list sweeps: 1,8,64.")
    ] = None,
    request_rate: Annotated[
        list[str] | None, typer.Option(help="Open loop: requests/s with Poisson arrivals; a list sweeps: 2,8,inf.")
    ] = None,
    burstiness: Annotated[
        float | None, typer.Option(help="Open loop: gamma shape of the arrival gaps (1: Poisson) [1].")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Open loop: at most this many in flight.")] = None,
    prompts: PromptsOpt = None,
    num_prompts: Annotated[int | None, typer.Option(help="Distinct prompts drawn (sampled with --seed) [200].")] = None,
    prompt_len: Annotated[int | None, typer.Option(help="Synthetic prompts: tokens each [128].")] = None,
    output_len: Annotated[
        int | None, typer.Option(help="Tokens asked per request [128; with --prompts: each record's own].")
    ] = None,
    ignore_eos: Annotated[
        bool, typer.Option(help="Ask for exactly --output-len tokens (ignore_eos, min_tokens: vLLM, SGLang).")
    ] = False,
    slo: Annotated[
        str | None, typer.Option(help="Service-level objectives for goodput, in ms: ttft=500,tpot=50,e2e=5000.")
    ] = None,
    find_rate: Annotated[
        bool, typer.Option(help="Search the highest request rate whose SLO attainment meets --slo-attainment.")
    ] = False,
    slo_attainment: Annotated[
        float | None, typer.Option(help="Fraction of requests that must meet every SLO [0.9].")
    ] = None,
    min_duration: Annotated[float | None, typer.Option(help="Minimum seconds per measured window [10].")] = None,
    min_requests: Annotated[int | None, typer.Option(help="Minimum requests per measured window [20].")] = None,
    warmup: Annotated[int | None, typer.Option(help="Warm-up requests, excluded from the window [2].")] = None,
    max_requests: Annotated[int | None, typer.Option(help="At most this many requests per point [10000].")] = None,
    max_duration: Annotated[float | None, typer.Option(help="At most this many seconds per point [600].")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds one request may take in all before it counts as timed out [300].")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="auto: for a local URL, find the process listening on its port and measure the GPUs it "
            "uses (else its share of the CPU); cpu or cuda: only that kind; none: do not look [auto]."
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--server-precision",
            "--precision",
            help="The precision the server computes in: MFU's denominator (not given: no MFU).",
        ),
    ] = None,
    server_device: Annotated[
        str | None,
        typer.Option(help="The server's accelerator as the spec table names it, e.g. 'NVIDIA H100 SXM5 80GB'."),
    ] = None,
    server_devices: Annotated[
        int | None, typer.Option(help="How many of --server-device the server uses (MFU's peak is that many).")
    ] = None,
    assume_watts: AssumeWattsOpt = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key [OPENAI_API_KEY]; never recorded.")
    ] = None,
    save_requests: Annotated[
        bool, typer.Option(help="Keep the timings of every request in the window in the result.")
    ] = False,
    out_dir: OutOpt = RESULTS_DIR,
    seed: Annotated[int, typer.Option(help="Seed for prompt sampling, synthetic prompts and arrivals.")] = SEED,
) -> None:
    """Benchmark a running OpenAI-compatible server (vLLM, SGLang, llama.cpp, transformers serve):
    TTFT, ITL, TPOT, E2E, tokens/s, goodput under SLOs, energy where its device is on this host."""
    from harness.cli.tables import served_table
    from harness.serve.bench import SERVE_WINDOW, ServeRequest, run_serve

    window = replace(SERVE_WINDOW, **given(warmup=warmup, min_duration=min_duration, min_iters=min_requests))
    req = ServeRequest(
        url=url,
        model=model,
        tokenizer=tokenizer,
        window=window,
        ignore_eos=ignore_eos,
        slo=slo,
        find_rate=find_rate,
        save_requests=save_requests,
        out_dir=out_dir,
        seed=seed,
        concurrency=parse_sizes(concurrency, "--concurrency") if concurrency else [],
        request_rates=_rates(request_rate) if request_rate else [],
        max_concurrency=max_concurrency,
        prompts=prompts,
        assume_watts=assume_watts,
        **given(
            api=api,
            burstiness=burstiness,
            num_prompts=num_prompts,
            prompt_len=prompt_len,
            output_len=output_len,
            slo_attainment=slo_attainment,
            max_requests=max_requests,
            max_duration=max_duration,
            timeout=timeout,
            device=device,
            precision=precision,
            server_device=server_device,
            server_devices=server_devices,
            api_key_env=api_key_env,
        ),
    )
    session, _ = run_serve(req, cli_events(window.min_duration, window.min_iters))
    out.print(served_table(session.result.points))
    for note in session.result.notes:
        out.print(note)
    finish_run(session)
