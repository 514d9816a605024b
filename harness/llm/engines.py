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

import logging
import time

import numpy as np
import torch

from harness.errors import UserError
from harness.inputs import split_list
from harness.llm.runner import Workload
from models.llm.model import DecoderLM

ENGINES = ("modelpower", "transformers", "llama.cpp")
ENGINE = "modelpower"  # ours: the default engine
MAX_TEMPERATURE = 1e4  # transformers' sampling turns 1e-38 or 1e39 into NaN probabilities
MIN_TEMPERATURE = 1e-4


def parse_engines(values: list[str] | None) -> list[str]:
    """`--engine modelpower,transformers` (comma lists or repeats) as a list, in order, each once."""
    if values is not None and not "".join(values).replace(",", "").strip():
        names = []  # nothing but commas: said as such below
    else:
        names = split_list(values or [ENGINE], "--engine")
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
    q/k/v biases; RoPE scaling (Llama 3.1) as the same per-frequency divisors. No end-of-sequence
    token: generation runs the fixed length, and an EOS id that transformers' config would otherwise
    assume (2 for Llama) stays an ordinary token, as in ours."""
    try:
        import transformers  # seconds to import: --engine transformers only
    except ImportError:
        raise UserError("--engine transformers needs the transformers package: pip install transformers") from None
    c = model.cfg
    prefix = "Qwen2" if c.family == "qwen2" and c.qkv_bias else "Llama"
    extra = {} if prefix == "Qwen2" else {"attention_bias": c.qkv_bias}
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        intermediate_size=c.intermediate_size,
        max_position_embeddings=c.max_position,
        rope_theta=c.rope_theta,
        rms_norm_eps=c.norm_eps,
        tie_word_embeddings=c.tie_embeddings,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=None,
        **extra,
    )
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
    if c.rope_factors is not None:  # Llama 3.1's scaling: our frequencies, each divided by its factor
        rope = hf.model.rotary_emb
        factors = torch.tensor(c.rope_factors, device=rope.inv_freq.device, dtype=torch.float32)
        rope.inv_freq = rope.inv_freq.float() / factors
        if hasattr(rope, "original_inv_freq"):
            rope.original_inv_freq = rope.inv_freq
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

    def generate(
        self, prompts: torch.Tensor, w: Workload, pad: torch.Tensor | None, cache_len: int | None = None
    ) -> tuple[float, list[float], torch.Tensor]:
        from transformers import GenerationConfig  # (as above)

        t = prompts.shape[1]
        mask = torch.ones_like(prompts)
        if pad is not None:
            mask = (torch.arange(t, device=prompts.device).view(1, t) >= pad.view(-1, 1)).long()
        sampled = w.temperature > 0
        gc = GenerationConfig(
            max_new_tokens=w.output_len,
            min_new_tokens=w.output_len,
            do_sample=sampled,
            temperature=w.temperature if sampled else None,
            top_k=w.top_k if sampled else None,
            top_p=w.top_p if sampled else None,
            pad_token_id=0,
            eos_token_id=None,
        )
        if sampled:
            torch.manual_seed(w.seed)
        streamer = _Stamps()
        with torch.inference_mode():  # the cache's tensors are made (and reset) in inference mode
            cache = self._cache(prompts.shape[0], cache_len or t + w.output_len)
            if prompts.is_cuda:
                torch.cuda.synchronize(prompts.device)
            t0 = time.perf_counter()
            seq = self.hf.generate(
                prompts, attention_mask=mask, generation_config=gc, streamer=streamer, past_key_values=cache
            )
        out = seq[:, t:]
        if out.shape[1] != w.output_len or len(streamer.stamps) != w.output_len:
            raise RuntimeError(f"transformers generated {out.shape[1]} tokens, {w.output_len} were asked")
        return t0, streamer.stamps, out

    def _cache(self, batch: int, length: int):
        """One static KV cache per (batch, length) for the whole point, as ours: sized for the
        longest prompt and output at the start, so it never grows (or recompiles) in the window."""
        from transformers import StaticCache  # (as above)

        key = (batch, length)
        if key not in self.caches:
            self.caches[key] = StaticCache(config=self.hf.config, max_cache_len=length)
        else:
            self.caches[key].reset()
        return self.caches[key]


class LlamaCppEngine:
    """llama.cpp on the GGUF file as stored, through llama-cpp-python's bindings of its C API: the
    same prompt ids (each row's real tokens: llama.cpp keeps a position per sequence, so left padding
    is dropped, not computed), greedy (argmax of each row's logits), a fixed output length (no stop
    at EOS), one context per (batch, cache length) holding a sequence per row, the same thread count
    as torch. Each generation clears the KV cache and prefills every prompt whole, in one batch,
    then decodes one token per sequence per `llama_decode` call, as llama.cpp's batched example does."""

    name = "llama.cpp"
    timestamps = "host clock after each llama_decode call returns the step's logits"
    decode_step = "llama.cpp (llama_decode, one token per sequence)"

    def __init__(self, path, threads: int):
        try:
            import llama_cpp  # the optional llamacpp extra
        except ImportError:
            raise UserError(
                "--engine llama.cpp needs llama-cpp-python: pip install 'modelpower[llamacpp]' (it "
                "builds from source, 15-25 min on 2 cores)"
            ) from None

        from llama_cpp import _logger  # routes llama.cpp's log lines to a Python logger: errors only

        _logger.logger.setLevel(logging.ERROR)
        llama_cpp.llama_log_set(_logger.llama_log_callback, None)
        self.lc, self.threads = llama_cpp, threads
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise UserError(f"llama.cpp cannot load {path}")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.ctx, self.key, self.batch, self.capacity = None, None, None, 0
        info = llama_cpp.llama_print_system_info()
        self.build = {
            "llama_cpp_python": llama_cpp.__version__,
            "threads": threads,
            "system_info": (info.decode() if isinstance(info, bytes) else str(info)).strip(),
        }

    def _context(self, rows: int, length: int, tokens: int):
        """One context (and batch buffer) per (rows, cache length), kept while the point runs."""
        lc = self.lc
        if self.key != (rows, length) or tokens > self.capacity:  # a longer batch of prompts: a larger buffer
            self.close()
            cp = lc.llama_context_default_params()
            cp.n_ctx, cp.n_seq_max = rows * length, rows
            self.capacity = max(tokens, rows, 512)
            cp.n_batch = cp.n_ubatch = self.capacity
            cp.n_threads = cp.n_threads_batch = self.threads
            self.ctx = lc.llama_init_from_model(self.model, cp)
            if not self.ctx:
                raise UserError(f"llama.cpp could not make a context of {rows} sequences x {length} tokens")
            self.batch, self.key = lc.llama_batch_init(self.capacity, 0, rows), (rows, length)
        return self.ctx, self.batch

    def close(self) -> None:
        if self.ctx is not None:
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.ctx = self.key = self.batch = None
            self.capacity = 0

    def __del__(self):
        try:
            self.close()
            self.lc.llama_model_free(self.model)
        except Exception:
            pass

    def _decode(self, ctx, batch, entries: list[tuple[int, int, int, bool]]) -> None:
        """Queue (token, position, sequence, wants logits) entries and run llama_decode on them."""
        for k, (tok, pos, seq, out) in enumerate(entries):
            batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = tok, pos, 1, out
            batch.seq_id[k][0] = seq
        batch.n_tokens = len(entries)
        code = self.lc.llama_decode(ctx, batch)
        if code != 0:
            raise UserError(f"llama.cpp's llama_decode failed (code {code}) on {len(entries)} tokens")

    def _argmax(self, ctx, index: int) -> int:
        ptr = self.lc.llama_get_logits_ith(ctx, index)
        return int(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).argmax())

    def generate(
        self, prompts: torch.Tensor, w: Workload, pad: torch.Tensor | None, cache_len: int | None = None
    ) -> tuple[float, list[float], torch.Tensor]:
        rows_n, t = prompts.shape
        starts = [0] * rows_n if pad is None else [int(p) for p in pad]
        rows = [prompts[r, starts[r] :].tolist() for r in range(rows_n)]
        total = sum(len(r) for r in rows)
        ctx, batch = self._context(rows_n, cache_len or t + w.output_len, total)
        self.lc.llama_memory_clear(self.lc.llama_get_memory(ctx), True)
        out = np.empty((rows_n, w.output_len), np.int64)
        stamps = []
        t0 = time.perf_counter()
        entries, last = [], []
        for s, ids in enumerate(rows):
            entries += [(tok, i, s, i == len(ids) - 1) for i, tok in enumerate(ids)]
            last.append(len(entries) - 1)
        self._decode(ctx, batch, entries)
        out[:, 0] = [self._argmax(ctx, k) for k in last]
        stamps.append(time.perf_counter())
        for step in range(1, w.output_len):
            self._decode(ctx, batch, [(int(out[s, step - 1]), len(rows[s]) + step - 1, s, True) for s in range(rows_n)])
            out[:, step] = [self._argmax(ctx, s) for s in range(rows_n)]
            stamps.append(time.perf_counter())
        return t0, stamps, torch.from_numpy(out)


__all__ = ["ENGINES", "LlamaCppEngine", "TransformersEngine", "parse_engines", "to_transformers"]
