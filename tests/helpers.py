"""Plain helpers shared by test modules (fixtures live in conftest.py): result points and files, a
small LLM checkpoint on disk, and the one-line error check. Test modules import from here, never
from each other."""

import json

import torch
from safetensors.torch import save_file

from harness.measure.stats import latency_stats
from harness.results.schema import SCHEMA_VERSION, LLMPoint, Point, RunResult
from models.llm.config import LLM_CONFIGS, LLMConfig
from models.llm.model import build_llm

TINY = LLM_CONFIGS["llm-tiny"]


def assert_one_line(r, text: str):
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("modelpower: error:"), r.stderr
    assert text in lines[0], lines[0]


def make_point(**over) -> Point:
    st = latency_stats([0.01, 0.012, 0.011])
    d = dict(
        model="m",
        task="classify",
        industry="steel",
        arch="a",
        input_hw=[224, 224],
        num_classes=6,
        weights={"kind": "random-init", "seed": 0},
        device="cpu",
        device_name="cpu x",
        backend="torch",
        preprocess="numba",
        precision="fp32",
        batch_size=4,
        params=10,
        flops_per_sample=1e9,
        load_s=0.1,
        first_call_s=0.2,
        warmup_iters=1,
        staged={k: st for k in ("pre", "h2d", "infer", "d2h", "post")},
        staged_window_s=1.0,
        e2e=st,
        window_s=1.0,
        iterations=3,
        samples=12,
        throughput_sps=12.0,
        delivered_tflops=0.012,
        infer_tflops=0.4,
        input_source="synthetic",
        pre_threads_overlapped=1,
        output_check={"checked_batches": 3, "nan_or_inf": False},
    )
    d.update(over)
    return Point(**d)


def make_llm_point(**over) -> LLMPoint:
    """An LLM point as run-llm records one (figures made up for the test, never for a result)."""
    st = latency_stats([0.01, 0.012, 0.011])
    d = dict(
        kind="llm",
        model="llm-tiny",
        source={"kind": "random-init", "seed": 0},
        device="cuda:0",
        device_name="NVIDIA H100 80GB HBM3",
        precision="bf16",
        batch_size=8,
        prompt_len=128,
        output_len=128,
        sampling={"greedy": True},
        status="ok",
        params=10,
        compiled=False,
        runs=3,
        window_s=1.0,
        ttft=st,
        itl=st,
        decode_tokens_per_s=1000.0,
        output_tokens_per_s=900.0,
        total_tokens_per_s=1800.0,
        requests_per_s=7.0,
        prefill_tflops=100.0,
        prefill_mfu=0.1,
        mfu_peak_tflops=989.4,
        energy={"measured": True, "method": "nvml", "scope": "GPU board (NVML energy counter)", "estimate": False},
    )
    d.update(over)
    return LLMPoint(**d)


def make_result(points) -> RunResult:
    return RunResult(SCHEMA_VERSION, "abc", "complete", "t0", "t1", "modelpower run m", {}, {"versions": {}}, points)


def write_checkpoint(folder, cfg: LLMConfig, arch: str, seed=3, shards=2):
    m = build_llm(cfg, torch.device("cpu"), torch.float32, seed)
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight")
    names = sorted(state)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(folder / fname))
        weight_map.update(dict.fromkeys(part, fname))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": [arch],
                "vocab_size": cfg.vocab_size,
                "hidden_size": cfg.hidden_size,
                "num_hidden_layers": cfg.num_layers,
                "num_attention_heads": cfg.num_heads,
                "num_key_value_heads": cfg.num_kv_heads,
                "intermediate_size": cfg.intermediate_size,
                "max_position_embeddings": cfg.max_position,
                "rope_theta": cfg.rope_theta,
                "rms_norm_eps": cfg.norm_eps,
                "tie_word_embeddings": cfg.tie_embeddings,
            }
        )
    )
    return m
