"""LLM benchmarking: FLOPs by hand, the cached forward against a naive reference, checkpoints,
metric arithmetic, and every bad input as one line."""

import itertools
import json

import pytest
import torch
from typer.testing import CliRunner

import harness.llm.runner as lr
from harness.cli import app
from harness.llm.runner import Workload, generate, measure_llm
from harness.results.schema import read_result
from models.llm.checkpoint import load_checkpoint
from models.llm.config import LLMConfig
from models.llm.flops import decode_flops, prefill_flops
from models.llm.model import build_llm
from tests.helpers import TINY, write_checkpoint

CPU = torch.device("cpu")
runner = CliRunner()


def test_flops_per_token_by_hand():
    h, kv, f, v, L = 256, 4 * 32, 688, 4096, 4
    per_layer = h * h + 2 * h * kv + h * h + 3 * h * f
    assert TINY.matmul_params() == L * per_layer + h * v
    # decode at context 100: 2 x matmul params + 2 x 2 x layers x ctx x (heads x head_dim)
    assert decode_flops(TINY, 100) == 2 * TINY.matmul_params() + 4 * L * 100 * 256
    # prefill of 3 tokens: causal, token i attends to i + 1 positions
    assert prefill_flops(TINY, 3) == 3 * 2 * TINY.matmul_params() + 4 * L * 256 * (1 + 2 + 3)


def naive_logits(m, tokens):
    """Reference forward: no cache, explicit causal softmax attention, repeated KV heads."""
    c = m.cfg
    b, t = tokens.shape
    x = m.model.embed_tokens(tokens)
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2).float() / c.head_dim))
    ang = torch.outer(torch.arange(t).float(), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(z):
        z1, z2 = z.chunk(2, -1)
        return z * cos + torch.cat([-z2, z1], -1) * sin

    def norm(z, w):
        return z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + c.norm_eps) * w

    for layer in m.model.layers:
        a = layer.self_attn
        hN = norm(x, layer.input_layernorm.weight)
        q = rope(a.q_proj(hN).view(b, t, c.num_heads, c.head_dim).transpose(1, 2))
        k = rope(a.k_proj(hN).view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2))
        v = a.v_proj(hN).view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)
        rep = c.num_heads // c.num_kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = q @ k.transpose(-1, -2) / c.head_dim**0.5
        s = s.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
        x = x + a.o_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1))
        hN = norm(x, layer.post_attention_layernorm.weight)
        x = x + layer.mlp.down_proj(torch.nn.functional.silu(layer.mlp.gate_proj(hN)) * layer.mlp.up_proj(hN))
    return m.lm_head(norm(x, m.model.norm.weight))


def test_prefill_and_cached_decode_match_the_naive_reference():
    m = build_llm(TINY, CPU, torch.float32, seed=1)
    tokens = torch.randint(0, TINY.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    ref = naive_logits(m, tokens)
    with torch.inference_mode():
        m.setup_cache(2, 16)
        pre = m(tokens[:, :8], torch.arange(8))
        steps = [m(tokens[:, i : i + 1], torch.tensor([i])) for i in range(8, 12)]
    torch.testing.assert_close(pre, ref[:, :8], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(steps, 1), ref[:, 8:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "arch,cfg",
    [
        ("LlamaForCausalLM", TINY),
        ("Qwen2ForCausalLM", LLMConfig("q", 512, 64, 2, 4, 2, 128, 256, 1e6, qkv_bias=True, tie_embeddings=True)),
    ],
)
def test_checkpoint_loads_with_the_same_logits(tmp_path, arch, cfg):
    src = write_checkpoint(tmp_path / "ckpt", cfg, arch)
    loaded = load_checkpoint(tmp_path / "ckpt", CPU, torch.float32)
    tokens = torch.randint(0, cfg.vocab_size, (1, 10))
    torch.testing.assert_close(naive_logits(loaded, tokens), naive_logits(src, tokens))
    if cfg.tie_embeddings:
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_generation_metrics_arithmetic():
    m = build_llm(TINY, CPU, torch.float32)
    w = Workload(batch_size=3, prompt_len=16, output_len=8)
    t0, stamps, out = generate(m, lr.synthetic_prompts(w, TINY.vocab_size, CPU), w, m)
    assert len(stamps) == 8 and t0 < stamps[0] and all(a < b for a, b in itertools.pairwise(stamps))
    assert out.shape == (3, 8) and ((out >= 0) & (out < TINY.vocab_size)).all()
    p = measure_llm(m, w, CPU, "fp32", {"kind": "random-init", "seed": 0}, 0.0, 3)
    assert p.status == "ok" and p.runs >= 3 and p.ttft.count == p.runs and p.itl.count == p.runs * 7
    assert p.output_tokens_per_s == pytest.approx(p.runs * 3 * 8 / p.window_s)
    assert p.requests_per_s == pytest.approx(p.runs * 3 / p.window_s)
    assert p.prefill_flops_per_token == prefill_flops(TINY, 16) / 16
    assert p.prefill_tokens_per_s == pytest.approx(3 * 16 / (p.ttft.mean_ms / 1e3))
    assert p.tokens_checked["valid_ids"] and p.energy["measured"] is False and p.joules_per_token is None
    assert p.decode_mbu is None  # no nameplate bandwidth for a CPU


def test_greedy_generation_is_reproducible():
    m = build_llm(TINY, CPU, torch.float32)
    w = Workload(2, 8, 6)
    pr = lr.synthetic_prompts(w, TINY.vocab_size, CPU)
    assert torch.equal(generate(m, pr, w, m)[2], generate(m, pr, w, m)[2])


def test_run_llm_sweep_records_oom_and_goes_on(tmp_path, monkeypatch):
    real = lr.generate

    def oom_at_batch_4(model, prompts, w, *args):
        if w.batch_size == 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, prompts, w, *args)

    monkeypatch.setattr(lr, "generate", oom_at_batch_4)
    r = runner.invoke(
        app,
        [
            "run-llm",
            "llm-tiny",
            "-b",
            "1,4,2",
            "--prompt-len",
            "16",
            "--output-len",
            "4",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--min-duration",
            "0",
            "--min-iters",
            "1",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    pts = read_result(next(tmp_path.glob("*.json"))).points
    assert [(p.batch_size, p.status) for p in pts] == [(1, "ok"), (4, "oom"), (2, "ok")]
    assert pts[0].ttft.count >= 1


def test_run_llm_with_a_checkpoint_and_prompts_file(tmp_path):
    write_checkpoint(tmp_path / "ckpt", TINY, "MistralForCausalLM")
    (tmp_path / "p.txt").write_text("1 2 3 4 5 6 7 8\n9 10 11 12 13 14 15 16\n")
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(tmp_path / "ckpt"),
            "--prompt-len",
            "8",
            "--output-len",
            "4",
            "-b",
            "2",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--min-duration",
            "0",
            "--min-iters",
            "1",
            "--prompts",
            str(tmp_path / "p.txt"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 0, r.output
    p = read_result(next((tmp_path / "o").glob("*.json"))).points[0]
    assert p.source["kind"] == "checkpoint" and p.status == "ok"


@pytest.mark.parametrize(
    "args,text",
    [
        (["llm-tiny", "--prompt-len", "1000", "--output-len", "100"], "exceed the model's context of 1024"),
        (["llm-tiny", "-b", "0"], "positive integer"),
        (["llm-tiny", "--output-len", "0"], "positive integer"),
        (["llm-tinny"], "did you mean llm-tiny"),
        (["llm-tiny", "--precision", "fp16"], "fp16 on the CPU"),
        (["llm-tiny", "--precision", "int4"], "unknown precision"),
    ],
)
def test_run_llm_bad_input(args, text, tmp_path):
    r = runner.invoke(app, ["run-llm", *args, "--device", "cpu", "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and text in lines[0], r.stderr


def test_bad_checkpoints(tmp_path):
    def err(folder):
        r = runner.invoke(app, ["run-llm", str(folder), "--device", "cpu", "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, r.output
        return r.stderr

    ck = tmp_path / "ck"
    ck.mkdir()
    assert "no config.json" in err(ck)
    (ck / "config.json").write_text("{not json")
    assert "not valid JSON" in err(ck)
    (ck / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    assert "architecture 'GPT2LMHeadModel' is not supported" in err(ck)
    write_checkpoint(ck, TINY, "LlamaForCausalLM", shards=1)
    (ck / "model-00001-of-00001.safetensors").write_bytes(b"truncated")
    assert "cannot read weights" in err(ck)


@pytest.mark.slow  # torch.compile (inductor) of the decode step
def test_compiled_decode_matches_eager_and_compiles_once():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    m = build_llm(TINY, CPU, torch.float32)
    w = Workload(2, 8, 6)
    pr = lr.synthetic_prompts(w, TINY.vocab_size, CPU)
    eager = generate(m, pr, w, m)[2]
    compiled = torch.compile(m, mode="default", fullgraph=True, dynamic=False)
    for _ in range(2):  # the second generation reuses the same cache buffers: no recompile
        got = generate(m, pr, w, compiled)[2]
    assert torch.equal(got, eager)
    assert counters["stats"]["unique_graphs"] == 1


def test_llama31_rope_scaling_matches_transformers(tmp_path):
    """A Llama 3.1 checkpoint ("llama3" rope_scaling) loads with transformers' logits, at positions
    past the scaling's original context; without the scaling the logits differ (the test can fail)."""
    import dataclasses

    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    rope = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
        "rope_theta": 500000.0,
    }
    hf_cfg = HFConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling=rope,
        tie_word_embeddings=False,
    )
    hf = LlamaForCausalLM(hf_cfg).eval()
    hf.save_pretrained(tmp_path / "ck")
    ours = load_checkpoint(tmp_path / "ck", CPU, torch.float32)
    assert ours.cfg.rope_factors is not None and max(ours.cfg.rope_factors) == pytest.approx(8.0)
    tokens = torch.randint(0, 64, (1, 120))

    def logits(m):  # prefill of 116 tokens, then 4 cached decode steps
        with torch.inference_mode():
            m.setup_cache(1, 128)
            pre = m(tokens[:, :116], torch.arange(116))
            return torch.cat([pre, *(m(tokens[:, i : i + 1], torch.tensor([i])) for i in range(116, 120))], 1)

    with torch.no_grad():
        want = hf(tokens).logits
    got = logits(ours)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    plain = build_llm(dataclasses.replace(ours.cfg, rope_factors=None), CPU, torch.float32)
    plain.load_state_dict(ours.state_dict(), strict=False)
    off, unscaled = (got - want).abs().max(), (logits(plain) - want).abs().max()
    assert unscaled > 30 * off, (unscaled, off)


def test_rope_factors_round_trip_through_gguf(tmp_path):
    import dataclasses

    from models.llm.config import LLAMA31_ROPE, llama3_rope_factors
    from models.llm.gguf import load_gguf
    from models.llm.gguf_write import write_gguf

    assert len(LLAMA31_ROPE) == 64 and min(LLAMA31_ROPE) == pytest.approx(1.0) and max(LLAMA31_ROPE) == 8.0
    cfg = dataclasses.replace(TINY, rope_factors=llama3_rope_factors(TINY.head_dim, 1e4, 4.0, 1.0, 4.0, 64))
    m = build_llm(cfg, CPU, torch.float32)
    write_gguf(tmp_path / "m.gguf", m.state_dict(), cfg)
    loaded, _ = load_gguf(tmp_path / "m.gguf", CPU, torch.float32)
    assert loaded.cfg.rope_factors == pytest.approx(cfg.rope_factors, rel=1e-6)


def test_transformers_peer_gets_the_same_rope_scaling():
    """--engine transformers on a Llama 3.1-style model runs the same network: the same logits past the
    scaling's original context, and not those of plain RoPE."""
    import dataclasses

    from harness.llm.engines import to_transformers
    from models.llm.config import llama3_rope_factors

    cfg = dataclasses.replace(TINY, rope_factors=llama3_rope_factors(TINY.head_dim, 1e4, 8.0, 1.0, 4.0, 32))
    m = build_llm(cfg, CPU, torch.float32)
    tokens = torch.randint(0, cfg.vocab_size, (1, 100), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        m.setup_cache(1, 128)
        ours = m(tokens, torch.arange(100))
        theirs = to_transformers(m)(tokens).logits
        plain = build_llm(dataclasses.replace(cfg, rope_factors=None), CPU, torch.float32)
        plain.load_state_dict(m.state_dict(), strict=False)
        unscaled = to_transformers(plain)(tokens).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    assert (unscaled - ours).abs().max() > 30 * (theirs - ours).abs().max().clamp_min(1e-6)


@pytest.mark.parametrize("factor", [1e-40, 1e9])
def test_rope_scaling_that_would_overflow_is_refused(tmp_path, factor):
    from models.errors import UserError
    from models.llm.checkpoint import load_checkpoint as load

    write_checkpoint(tmp_path / "ck", TINY, "LlamaForCausalLM", shards=1)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["rope_scaling"] = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="each divisor must lie in"):
        load(tmp_path / "ck", CPU, torch.float32)
