"""The LLM engine's decode layout: the CPU decode matmul kernel against its NumPy reference, fused
projections, int8 weight-only, and transformers' generate() as the peer engine on the same weights."""

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import harness.llm.runner as lr
from harness.cli import app
from harness.llm.engines import TransformersEngine, parse_engines
from harness.llm.runner import PromptBatch, Workload, agreement, generate, greedy_reference
from harness.results.schema import read_result
from kernels.common.bits import bf16_bits_to_f32_ref
from kernels.llm.gemv import linear_rows, linear_rows_ref
from models.llm.config import LLMConfig
from models.llm.linear import ROWS_MAX, Int8Linear, Linear, matmul_weight_bytes, quantize_int8
from models.llm.model import build_llm, init_random
from tests.helpers import TINY

CPU = torch.device("cpu")
QWEN = LLMConfig("tiny-qwen", 512, 64, 2, 4, 2, 96, 256, 1e6, qkv_bias=True, tie_embeddings=True, family="qwen2")
runner = CliRunner()


# ------------------------------------------------------------------ the kernel against its reference
@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, ROWS_MAX),
    n=st.integers(1, 70),
    k=st.integers(1, 300),
    int8=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_rows_equals_the_reference(m, n, k, int8, seed):
    g = np.random.default_rng(seed)
    x = g.standard_normal((m, k)).astype(np.float32)
    if int8:
        w = g.integers(-127, 128, (n, k)).astype(np.int8)
        scales = (g.random(n) * 0.01).astype(np.float32)
    else:
        w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.bfloat16)
        w, scales = w.view(torch.int16).numpy().view(np.uint16), None
    ref = linear_rows_ref(x, w, scales)
    got = linear_rows(x, w, scales)
    scale = np.abs(x) @ np.abs(w.astype(np.float64) if int8 else bf16_bits_to_f32_ref(w)).T
    if scales is not None:
        scale = scale * scales
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=float(1e-5 * scale.max() + 1e-30))


def test_linear_rows_refuses_overlapping_or_read_only_out_and_stray_scales():
    x = np.ones((2, 2), np.float32)
    w = np.full((2, 2), 0x3F80, np.uint16)  # bf16 ones
    with pytest.raises(ValueError, match="must not overlap"):
        linear_rows(x, w, out=x)
    ro = np.empty((2, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        linear_rows(x, w, out=ro)
    with pytest.raises(ValueError, match="scales go with int8"):
        linear_rows(x, w, np.ones(2, np.float32))


def test_linear_rows_edge_values_and_bad_input():
    bits = np.array([[0x7FC0, 0x3F80], [0x7F80, 0x3F80]], np.uint16)  # [NaN, 1], [inf, 1]
    y = linear_rows(np.array([[1.0, 2.0]], np.float32), bits)
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf
    assert bf16_bits_to_f32_ref(np.array([0x3F80, 0xC000], np.uint16)).tolist() == [1.0, -2.0]
    with pytest.raises(ValueError, match="x \\[M, K\\]"):
        linear_rows(np.zeros((1, 3), np.float32), np.zeros((2, 4), np.uint16))
    with pytest.raises(ValueError, match="scales"):
        linear_rows(np.zeros((1, 4), np.float32), np.zeros((2, 4), np.int8))
    with pytest.raises(ValueError, match="uint16"):
        linear_rows(np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float16))


def test_linear_module_takes_the_kernel_for_decode_rows_only(monkeypatch):
    """bf16 decode rows go through the kernel and equal torch's linear; prefill rows, grad mode and
    fp32 weights stay with torch."""
    torch.manual_seed(0)
    lin = Linear(96, 40, bias=True).to(torch.bfloat16)
    calls = []
    import models.llm.linear as ll

    monkeypatch.setattr(ll, "linear_rows", lambda *a: calls.append(1) or linear_rows(*a))
    x = torch.randn(2, 1, 96, dtype=torch.bfloat16)
    with torch.inference_mode():
        y = lin(x)
        assert calls == [1] and y.dtype == torch.bfloat16 and y.shape == (2, 1, 40)
        torch.testing.assert_close(y, F.linear(x, lin.weight, lin.bias), rtol=1e-2, atol=1e-2)
        lin(torch.randn(1, ROWS_MAX + 1, 96, dtype=torch.bfloat16))  # prefill: torch's GEMM
        lin.float()(x.float())  # fp32 weights: torch
    lin.to(torch.bfloat16)(x)  # grad mode: torch
    assert calls == [1]


# ------------------------------------------------------------------ fused projections
@pytest.mark.parametrize("cfg", [TINY, QWEN], ids=["llama", "qwen2-bias-tied"])
def test_fused_projections_give_the_unfused_logits(cfg):
    m = build_llm(cfg, CPU, torch.float32, 0)
    tokens = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    pos = torch.arange(12)
    m.setup_cache(2, 16)
    with torch.inference_mode():
        before = m(tokens, pos)
        hf_names = set(m.state_dict())
        m.fuse()
        after = m(tokens, pos)
        step = m(tokens[:, :1], torch.tensor([12]))  # a decode step after the fused prefill
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(step).all()
    sd = m.unfused_state_dict()
    assert set(sd) == hf_names  # the names a checkpoint (or transformers) uses
    qkv = m.model.layers[0].self_attn.qkv_proj.weight
    assert sd["model.layers.0.self_attn.k_proj.weight"].data_ptr() == qkv[cfg.hidden_size :].data_ptr()  # a view


def test_fused_prefill_and_cached_decode_equal_the_no_cache_forward():
    """Greedy generation with fused weights and last-position logits equals argmax of full
    no-cache forwards of the growing sequence."""
    m = init_random(build_llm(TINY, CPU, torch.float32, 0), 1, std=0.3).fuse()
    prompt = torch.randint(0, TINY.vocab_size, (2, 7), generator=torch.Generator().manual_seed(3))
    _, _, out = generate(m, prompt, Workload(2, 7, 5), m)
    seq = prompt
    for i in range(5):
        m.setup_cache(2, seq.shape[1])
        with torch.inference_mode():
            nxt = m(seq, torch.arange(seq.shape[1]))[:, -1].argmax(-1)
        assert torch.equal(nxt, out[:, i]), i
        seq = torch.cat([seq, nxt[:, None]], 1)


# ------------------------------------------------------------------ int8 weight-only
def test_int8_linear_quantization_and_both_paths():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48, bias=True).to(torch.bfloat16)
    q = Int8Linear.quantize(lin)
    assert q.weight.dtype == torch.int8 and q.scales.dtype == torch.bfloat16 and q.weight.abs().max() <= 127
    deq = q.weight.float() * q.scales.float()[:, None]
    # half a step of the stored (bf16) scale; a row's largest weight may clamp by up to 127 x 2^-9 more
    assert ((deq - lin.weight.float()).abs() <= q.scales.float()[:, None] * (0.5 + 127 * 2**-9)).all()
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    torch_path = F.linear(x, q.weight.to(x.dtype)) * q.scales + q.bias
    with torch.inference_mode():
        kernel_path = q(x)  # 3 rows on the CPU: our kernel
    torch.testing.assert_close(kernel_path, torch_path, rtol=2e-2, atol=2e-2)


def test_int8_model_reads_about_half_the_bytes_and_agrees_with_bf16():
    m = build_llm(TINY, CPU, torch.bfloat16, 0).fuse()
    bf16_bytes = matmul_weight_bytes(m)
    assert bf16_bytes == 2 * TINY.matmul_params()
    ids = torch.randint(0, TINY.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    bt = PromptBatch.of(ids.tolist(), [6, 6], CPU)
    ref = greedy_reference(m, bt, 6)
    quantize_int8(m)
    int8_bytes = matmul_weight_bytes(m)
    assert TINY.matmul_params() < int8_bytes < 1.05 * TINY.matmul_params()  # int8 + bf16 scales per row
    new = greedy_reference(m, bt, 6)
    a = agreement(ref, new, "bf16")
    pairs = zip(ref[1].flatten().tolist(), new[1].flatten().tolist(), strict=True)
    by_hand = sum(x == y for x, y in pairs) / 12
    assert a["rows"] == 2 and a["tokens"] == 6 and a["greedy_token_agreement"] == pytest.approx(by_hand)
    assert a["greedy_token_agreement"] > 0  # int8 of a bf16 model keeps at least its first greedy tokens here
    assert 0 < a["max_abs_logit_error_first_step"] < 0.1 * a["max_abs_logit_first_step"]
    same = agreement(ref, ref, "bf16")
    assert same["greedy_token_agreement"] == 1.0 and same["first_divergence_step"] is None
    other = (ref[0], ref[1].clone())
    other[1][1, 4] += 1
    assert agreement(ref, other, "bf16")["first_divergence_step"] == 4


# ------------------------------------------------------------------ transformers as the peer engine
LLAMA_BIAS = LLMConfig("llama-bias", 512, 64, 2, 4, 2, 96, 256, qkv_bias=True, family="llama")
QWEN_NO_BIAS = LLMConfig("qwen-nobias", 512, 64, 2, 4, 4, 96, 256, 1e6, tie_embeddings=True, family="qwen2")


@pytest.mark.parametrize(
    "cfg", [TINY, QWEN, LLAMA_BIAS, QWEN_NO_BIAS], ids=["llama", "qwen2-bias-tied", "llama-qkv-bias", "qwen2-no-bias"]
)
def test_transformers_engine_generates_our_tokens_on_the_same_weights(cfg):
    pytest.importorskip("transformers")
    m = init_random(build_llm(cfg, CPU, torch.float32, 0), 2, std=0.3).fuse()
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist() for n in (9, 4)]
    bt = PromptBatch.of(rows, [6, 6], CPU)
    peer = TransformersEngine(m)
    assert peer.hf.model.embed_tokens.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()  # no copy
    w = Workload(2, 9, 6)
    t0, stamps, theirs = peer.generate(bt.ids, w, bt.pad, 15)
    ours = generate(m, bt.ids, w, m, bt.pad, 15)[2]
    assert torch.equal(theirs, ours) and len(stamps) == 6 and t0 < stamps[0]
    assert torch.equal(peer.generate(bt.ids, w, bt.pad, 15)[2], ours)  # the static cache reused, reset


def test_transformers_engine_has_no_end_of_sequence_token():
    """Llama's config assumes EOS id 2; with min_new_tokens transformers would never emit it. Here
    the head makes token 2 or 3 the argmax (by the sign of one hidden unit): both engines emit the
    same tokens, 2 included."""
    pytest.importorskip("transformers")
    m = build_llm(TINY, CPU, torch.float32, 0).fuse()
    with torch.no_grad():
        m.lm_head.weight.zero_()
        m.lm_head.weight[2, 0], m.lm_head.weight[3, 0] = 1.0, -1.0
    ids = torch.randint(0, TINY.vocab_size, (4, 6), generator=torch.Generator().manual_seed(0))
    w = Workload(4, 6, 8)
    ours = generate(m, ids, w, m)[2]
    assert (ours == 2).any()
    assert torch.equal(TransformersEngine(m).generate(ids, w, None)[2], ours)


def test_run_llm_engines_side_by_side_and_int8(tmp_path):
    pytest.importorskip("transformers")
    args = [
        "run-llm",
        "llm-tiny",
        "-b",
        "2",
        "--prompt-len",
        "8",
        "--output-len",
        "4",
        "--min-duration",
        "0",
        "--min-iters",
        "1",
        "--out",
        str(tmp_path),
    ]
    r = runner.invoke(app, [*args, "--engine", "modelpower,transformers"])
    assert r.exit_code == 0, r.output
    res = read_result(next(tmp_path.glob("*.json")))
    assert [p.engine for p in res.points] == ["modelpower", "transformers"]
    assert all(p.status == "ok" and p.kv_cache_bytes == 2 * 4 * 2 * 12 * 4 * 32 * 2 for p in res.points)
    assert res.points[1].compiled is False and res.config["engines"] == ["modelpower", "transformers"]
    r = runner.invoke(app, [*args, "--precision", "int8", "--out", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "q").glob("*.json"))).points
    assert p.precision == "int8" and p.compute_precision == "bf16" and "int8" in p.weights
    assert p.agreement["tokens"] == 4 and p.decode_bytes_per_step < 0.6 * 2 * TINY.matmul_params()
    raw = json.loads(next((tmp_path / "q").glob("*.json")).read_text())
    assert raw["points"][0]["agreement"]["against"] == "bf16"


@pytest.mark.parametrize(
    "extra,text",
    [
        (["--engine", "vllm"], "unknown --engine 'vllm'"),
        (["--precision", "int8", "--engine", "transformers"], "--precision int8 (weight-only) is modelpower's own"),
        (["--precision", "int4"], "unknown precision 'int4'"),
        (["--engine", ","], "--engine is empty"),
        (
            ["--engine", "transformers", "--temperature", "1e-300"],
            "--engine transformers samples at --temperature 0 or",
        ),
    ],
)
def test_bad_engine_options_are_one_line(tmp_path, extra, text):
    r = runner.invoke(app, ["run-llm", "llm-tiny", "--out", str(tmp_path), *extra])
    assert r.exit_code == 2 and text in r.output and "Traceback" not in r.output, r.output


def test_parse_engines():
    assert parse_engines(None) == ["modelpower"]
    assert parse_engines(["transformers,modelpower", "modelpower"]) == ["transformers", "modelpower"]


def test_int8_agreement_uses_the_first_point_that_fits(tmp_path, monkeypatch):
    """A first point estimated not to fit is recorded as skipped; the agreement runs on the next one
    instead of allocating the big one before the memory check."""
    import harness.llm.bench as lb

    def fits(extra, need, device):
        return "too big (test)" if need > 2e6 else None

    monkeypatch.setattr(lb, "fits", fits)
    monkeypatch.setattr(lr, "fits", fits)
    args = [
        "run-llm",
        "llm-tiny",
        "-b",
        "64,1",
        "--prompt-len",
        "64",
        "--output-len",
        "4",
        "--precision",
        "int8",
        "--min-duration",
        "0",
        "--min-iters",
        "1",
        "--out",
        str(tmp_path),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    big, small = read_result(next(tmp_path.glob("*.json"))).points
    assert big.status == "skipped" and small.status == "ok" and small.agreement["rows"] == 1
    assert big.detail.startswith("would not fit (estimated: too big (test)")


def test_cpu_peak_memory_is_each_points_own(tmp_path, monkeypatch):
    """A sweep whose first point holds 4 x 48 MiB during each generation and whose second holds
    48 MiB: the second point's peak RSS is the smaller (the process's lifetime peak, ru_maxrss, could
    only grow), and each says how it was taken."""
    real = lr.generate

    def holding(model, prompts, w, *args):
        held = np.ones(w.batch_size * (48 << 20), np.uint8)  # written: resident while the generation runs
        time.sleep(0.06)  # three of the sampler's periods
        out = real(model, prompts, w, *args)
        del held
        return out

    monkeypatch.setattr(lr, "generate", holding)
    args = ["run-llm", "llm-tiny", "-b", "4,1", "--prompt-len", "8", "--output-len", "4", "--device", "cpu"]
    r = runner.invoke(app, [*args, "--min-duration", "0", "--min-iters", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    big, small = read_result(next(tmp_path.glob("*.json"))).points
    assert (
        big.peak_memory_scope
        == small.peak_memory_scope
        == ("host: process RSS sampled every 20 ms over the point's timed window")
    )
    assert small.peak_memory_gib < big.peak_memory_gib - 100 / 1024, (big.peak_memory_gib, small.peak_memory_gib)


def test_decode_step_labels():
    m = build_llm(TINY, CPU, torch.float32, 0)
    p = lr.measure_llm(m, Workload(1, 4, 1), CPU, "fp32", {"kind": "random-init", "seed": 0}, 0.0, 1, cuda_graph=True)
    assert p.decode_step == "eager"  # one token: no decode step, no graph


def test_a_llama_checkpoint_with_attention_bias_is_refused(tmp_path):
    from models.llm.checkpoint import read_config

    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "vocab_size": 64,
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "attention_bias": True,
            }
        )
    )
    with pytest.raises(Exception, match="attention_bias / mlp_bias are not supported"):
        read_config(tmp_path)


# ------------------------------------------------------------------ decode graph bookkeeping, event timestamps
def _replay_eagerly(body, reset):
    return body  # the graph's static-buffer bookkeeping, run on the CPU without capture


@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (0.8, 5)])
@pytest.mark.parametrize("padded", [False, True])
def test_decode_graph_bookkeeping_gives_the_eager_tokens(temperature, top_k, padded):
    """Static token/position/step/padding buffers, token fed back on the device, step counter read
    by the sampler: the same tokens as the eager loop, for two generations through one graph."""
    from harness.llm.decode import DecodeGraphs

    m = init_random(build_llm(TINY, CPU, torch.float32, 0), 1, std=0.3).fuse()
    g = torch.Generator().manual_seed(4)
    rows = [torch.randint(0, TINY.vocab_size, (n,), generator=g).tolist() for n in ((8, 5) if padded else (8, 8))]
    bt = PromptBatch.of(rows, [7, 7], CPU)
    w = Workload(2, 8, 7, temperature, top_k, seed=3)
    graphs = DecodeGraphs(capture=_replay_eagerly)
    eager = generate(m, bt.ids, w, m, bt.pad, 20)[2]
    for _ in range(2):
        assert torch.equal(generate(m, bt.ids, w, m, bt.pad, 20, graphs)[2], eager)
    assert len(graphs.graphs) == 1 and graphs.off is None


def test_event_clock_arithmetic():
    """stamp_i = t0 + (event_i - event_0); events are read after the generation, once."""
    from harness.llm.decode import EventClock

    now = [100.0]
    syncs = []

    class FakeEvent:
        def record(self):
            self.t = now[0]

        def elapsed_time(self, other):  # milliseconds from self to other, as torch.cuda.Event
            return (other.t - self.t) * 1e3

    clock = EventClock(3, FakeEvent, lambda: syncs.append(1))
    clock.start()
    for dt in (0.25, 0.01, 0.02):
        now[0] += dt
        clock.mark()
    assert len(syncs) == 1  # start only: nothing synchronizes per token
    t0, stamps = clock.read()
    assert len(syncs) == 2 and stamps == pytest.approx([t0 + 0.25, t0 + 0.26, t0 + 0.28])


def test_a_failed_graph_capture_falls_back_to_eager_and_says_so():
    m = build_llm(TINY, CPU, torch.float32, 0).fuse()
    w = Workload(1, 8, 4)
    p = lr.measure_llm(m, w, CPU, "fp32", {"kind": "random-init", "seed": 0}, 0.0, 2, cuda_graph=True)
    assert p.status == "ok" and "cuda_graph_off" in p.flags and p.decode_step.startswith("eager (CUDA graph capture")
    q = lr.measure_llm(m, w, CPU, "fp32", {"kind": "random-init", "seed": 0}, 0.0, 2)
    assert q.decode_step == "eager" and q.timestamps.startswith("host clock") and "cuda_graph_off" not in q.flags
