"""The peer engines for `run-llm --engine`: Hugging Face transformers' `generate()` on the same weights,
and llama.cpp (through llama-cpp-python) on the same GGUF file.

`modelpower` (ours, `harness.llm.runner.generate`) and `transformers` run the same workload: the same
prompts (left padded with an attention mask), the same output length with no stop at EOS
(`min_new_tokens = max_new_tokens`), the same sampling settings, a static KV cache, and the same
weights. The transformers model is built on the meta device and takes our tensors without a copy
(fused projections as row views), so the comparison costs no second copy of the weights.

transformers' own defaults are kept (SDPA attention; on a GPU it compiles the forward of a static
cache by itself): the peer is the engine people use, as they use it. Its timestamps come from a
streamer that transformers calls with each new token after moving it to the host (a device
synchronize), the same point in time as ours.
"""

from __future__ import annotations

import time

import torch

from harness.errors import UserError
from harness.llm.runner import Workload
from models.llm import DecoderLM

ENGINES = ("modelpower", "transformers", "llama.cpp")
ENGINE = "modelpower"  # ours: the default engine
MAX_TEMPERATURE = 1e4  # transformers' sampling turns 1e-38 or 1e39 into NaN probabilities
MIN_TEMPERATURE = 1e-4


def parse_engines(values: list[str] | None) -> list[str]:
    """`--engine modelpower,transformers` (comma lists or repeats) as a list, in order, each once."""
    names = [v.strip() for item in values or [ENGINE] for v in item.split(",") if v.strip()]
    if not names:
        raise UserError(f"--engine is empty: use {', '.join(ENGINES)} (a comma-separated list runs each)")
    for n in names:
        if n not in ENGINES:
            raise UserError(f"unknown --engine {n!r}: use {', '.join(ENGINES)}")
    return list(dict.fromkeys(names))


def to_transformers(model: DecoderLM):
    """A transformers CausalLM of `model`'s architecture holding `model`'s own weight tensors.

    Qwen2 with q/k/v biases is transformers' Qwen2; every other case (Llama, Mistral without a
    sliding window, biases or not) is the same network as transformers' Llama, with
    `attention_bias` (and a zero o_proj bias, which Llama's option adds) where the checkpoint has
    q/k/v biases. No end-of-sequence token: generation runs the fixed length, and an EOS id that
    transformers' config would otherwise assume (2 for Llama) stays an ordinary token, as in ours."""
    try:
        import transformers
    except ImportError:
        raise UserError("--engine transformers needs the transformers package: pip install transformers") from None
    c = model.cfg
    prefix = "Qwen2" if c.family == "qwen2" and c.qkv_bias else "Llama"
    extra = {} if prefix == "Qwen2" else {"attention_bias": c.qkv_bias}
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads, intermediate_size=c.intermediate_size,
        max_position_embeddings=c.max_position, rope_theta=c.rope_theta, rms_norm_eps=c.norm_eps,
        tie_word_embeddings=c.tie_embeddings, eos_token_id=None, bos_token_id=None, pad_token_id=None, **extra,
    )  # fmt: skip
    p = next(model.parameters())
    with torch.device("meta"):
        hf = getattr(transformers, f"{prefix}ForCausalLM")(config)
    sd = model.unfused_state_dict()
    if extra.get("attention_bias"):
        zero = torch.zeros(c.hidden_size, device=p.device, dtype=p.dtype)
        sd |= {f"model.layers.{i}.self_attn.o_proj.bias": zero for i in range(c.num_layers)}
    hf.load_state_dict(sd, assign=True, strict=True)
    hf = hf.to(p.dtype)
    with torch.device(p.device):  # RoPE tables: buffers outside the state dict, kept in float32 as
        hf.model.rotary_emb = type(hf.model.rotary_emb)(config=config)  # from_pretrained keeps them
    hf.generation_config.eos_token_id = None
    return hf.eval()


class _Stamps:
    """A transformers streamer that keeps the time each new token reached the host."""

    def __init__(self):
        self.stamps: list[float] = []
        self.calls = 0

    def put(self, value) -> None:
        self.calls += 1
        if self.calls > 1:  # the first call is the prompt
            self.stamps.append(time.perf_counter())

    def end(self) -> None:
        pass


class TransformersEngine:
    """`generate(ids, w, pad, cache_len)` as `harness.llm.runner.generate`, through transformers' generate()."""

    name = "transformers"
    timestamps = "host clock when transformers hands each token to the streamer (after a device sync)"
    decode_step = "transformers generate()"

    def __init__(self, model: DecoderLM):
        self.hf = to_transformers(model)
        self.caches: dict[tuple[int, int], object] = {}  # (batch, length) -> StaticCache, reset per generation

    def generate(self, prompts: torch.Tensor, w: Workload, pad: torch.Tensor | None,
                 cache_len: int | None = None) -> tuple[float, list[float], torch.Tensor]:  # fmt: skip
        from transformers import GenerationConfig

        t = prompts.shape[1]
        mask = torch.ones_like(prompts)
        if pad is not None:
            mask = (torch.arange(t, device=prompts.device).view(1, t) >= pad.view(-1, 1)).long()
        sampled = w.temperature > 0
        gc = GenerationConfig(
            max_new_tokens=w.output_len, min_new_tokens=w.output_len, do_sample=sampled,
            temperature=w.temperature if sampled else None, top_k=w.top_k if sampled else None,
            top_p=w.top_p if sampled else None, pad_token_id=0, eos_token_id=None,
        )  # fmt: skip
        if sampled:
            torch.manual_seed(w.seed)
        streamer = _Stamps()
        with torch.inference_mode():  # the cache's tensors are made (and reset) in inference mode
            cache = self._cache(prompts.shape[0], cache_len or t + w.output_len)
            if prompts.is_cuda:
                torch.cuda.synchronize(prompts.device)
            t0 = time.perf_counter()
            seq = self.hf.generate(prompts, attention_mask=mask, generation_config=gc, streamer=streamer,
                                   past_key_values=cache)  # fmt: skip
        out = seq[:, t:]
        if out.shape[1] != w.output_len or len(streamer.stamps) != w.output_len:
            raise RuntimeError(f"transformers generated {out.shape[1]} tokens, {w.output_len} were asked")
        return t0, streamer.stamps, out

    def _cache(self, batch: int, length: int):
        """One static KV cache per (batch, length) for the whole point, as ours: sized for the
        longest prompt and output at the start, so it never grows (or recompiles) in the window."""
        from transformers import StaticCache

        key = (batch, length)
        if key not in self.caches:
            self.caches[key] = StaticCache(config=self.hf.config, max_cache_len=length)
        else:
            self.caches[key].reset()
        return self.caches[key]


class LlamaCppEngine:
    """llama.cpp on the GGUF file as stored, through llama-cpp-python: the same prompt ids, greedy
    (top-k 1), a fixed output length (no stop at EOS), one context of the point's cache length
    (prompt + output), the same thread count as torch. Batch 1 only: llama-cpp-python's `generate`
    runs one sequence. The prompt cache is cleared before each generation, so each prefill is whole."""

    name = "llama.cpp"
    timestamps = "host clock as llama-cpp-python's generate() yields each token"
    decode_step = "llama.cpp (llama-cpp-python generate())"

    def __init__(self, path, threads: int):
        try:
            import llama_cpp
        except ImportError:
            raise UserError("--engine llama.cpp needs llama-cpp-python: pip install 'modelpower[llamacpp]' (it "
                            "builds from source, 15-25 min on 2 cores)") from None  # fmt: skip
        self.llama_cpp, self.path, self.threads = llama_cpp, str(path), threads
        self.contexts: dict[int, object] = {}
        info = llama_cpp.llama_print_system_info()
        self.build = {"llama_cpp_python": llama_cpp.__version__, "threads": threads,
                      "system_info": (info.decode() if isinstance(info, bytes) else str(info)).strip()}  # fmt: skip

    def _llama(self, n_ctx: int):
        if n_ctx not in self.contexts:
            self.contexts.clear()  # one context at a time (each holds its KV cache)
            self.contexts[n_ctx] = self.llama_cpp.Llama(
                model_path=self.path,
                n_ctx=n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_batch=512,
                verbose=False,
            )
        return self.contexts[n_ctx]

    def generate(self, prompts: torch.Tensor, w: Workload, pad: torch.Tensor | None,
                 cache_len: int | None = None) -> tuple[float, list[float], torch.Tensor]:  # fmt: skip
        if prompts.shape[0] != 1 or pad is not None:
            raise UserError("--engine llama.cpp runs one sequence at a time: use -b 1")
        llm = self._llama(cache_len or prompts.shape[1] + w.output_len)
        llm.reset()  # no prompt-cache reuse: every generation prefills its whole prompt
        out, stamps = [], []
        t0 = time.perf_counter()
        for tok in llm.generate(prompts[0].tolist(), top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                                reset=True):  # fmt: skip
            out.append(tok)
            stamps.append(time.perf_counter())
            if len(out) == w.output_len:
                break
        return t0, stamps, torch.tensor([out], dtype=torch.long)


__all__ = ["ENGINES", "LlamaCppEngine", "TransformersEngine", "parse_engines", "to_transformers"]
