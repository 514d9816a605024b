"""A checkpoint's own tokenizer, for text prompts: `tokenizer.json` of a Hugging Face folder, or the
byte-level BPE vocabulary embedded in a GGUF file (llama.cpp's "gpt2" tokenizer model: Llama 3,
Qwen2, SmolLM ...), both through the `tokenizers` package; and the checkpoint's chat template,
rendered in a sandboxed Jinja environment (a template from a file is untrusted code).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import UserError, first_line

CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types that are special tokens


@dataclass
class TextTokenizer:
    """Text <-> token ids, and a conversation -> prompt ids through the chat template."""

    tok: object  # tokenizers.Tokenizer
    source: str  # where it came from, for the result
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos_id: int | None = None  # prepended to every encoded prompt (GGUF add_bos_token)
    _template: object = field(default=None, repr=False, compare=False)  # the chat template, compiled once

    def encode(self, text: str) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=self.add_bos_id is None).ids
        return [self.add_bos_id, *ids] if self.add_bos_id is not None else ids

    def count(self, text: str) -> int:
        """Tokens in generated text: no BOS or other special token added (what a server streamed)."""
        return len(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def chat(self, messages: list[dict]) -> list[int]:
        """The conversation rendered by the checkpoint's chat template (generation prompt added)."""
        if not self.chat_template:
            raise UserError(f"the tokenizer from {self.source} has no chat template for conversation prompts")
        try:
            template = self._template or _sandbox().from_string(self.chat_template)  # compiled once, untimed
            self._template = template
            with _time_limit(TEMPLATE_SECONDS):
                text = template.render(
                    messages=messages,
                    add_generation_prompt=True,
                    bos_token=self.bos_token or "",
                    eos_token=self.eos_token or "",
                )
        except Exception as e:  # a template error, a sandbox violation, a limit
            why = first_line(e, 160)
            raise UserError(f"the chat template of {self.source} fails: {why}") from None
        if len(text) > TEMPLATE_CHARS:
            raise UserError(
                f"the chat template of {self.source} renders {len(text):,} characters (limit {TEMPLATE_CHARS:,})"
            )
        if not text.strip():
            raise UserError(f"the chat template of {self.source} renders nothing")
        return self.tok.encode(text, add_special_tokens=False).ids


TEMPLATE_SECONDS = 5.0  # a chat template is untrusted code: it gets this long to render one prompt
TEMPLATE_CHARS = 1_000_000  # and may produce at most this much text (or build such strings and lists)


class TemplateLimit(Exception):
    pass


def _sandbox():
    """Jinja's immutable sandbox (no Python internals), with `*` and `**` capped so that a template
    cannot build a huge string or number, and `raise_exception` as Hugging Face templates use it."""
    from jinja2 import TemplateError  # only for chat templates: text prompts need no jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # (as above)

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
                raise TemplateLimit("exponent too large")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > TEMPLATE_CHARS:
                        raise TemplateLimit(f"a repetition of {len(seq) * n:,} items")
            return super().call_binop(context, operator, left, right)

    def raise_exception(msg):
        raise TemplateError(msg)

    env = Sandbox(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env


class _time_limit:
    """Raise TemplateLimit once `seconds` of wall time have passed: checked at every line the template's
    own compiled code runs (a trace function on frames of "<template>" only, so library code that
    catches exceptions cannot swallow it and switch the check off), and again on leaving, so a late
    render is never accepted. Not a SIGALRM timer: with OpenVINO's TBB threads in the process, the
    alarm's exception crashed the interpreter (a segfault in CI). An existing tracer (a debugger,
    coverage) is set aside during the render and restored after it."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        self.deadline = deadline = time.monotonic() + self.seconds
        message = f"rendering took over {self.seconds:g} s"

        def line(frame, event, arg):
            if time.monotonic() > deadline:
                raise TemplateLimit(message)
            return line

        def call(frame, event, arg):  # global tracer: local tracing for the template's frames only
            return line if frame.f_code.co_filename == "<template>" else None

        self.old = sys.gettrace()
        sys.settrace(call)
        return self

    def __exit__(self, exc_type, exc, tb):
        sys.settrace(self.old)
        if exc_type is None and time.monotonic() > self.deadline:
            raise TemplateLimit(f"rendering took over {self.seconds:g} s")
        return False


def from_gguf(reader) -> TextTokenizer:
    """The vocabulary embedded in a GGUF file; one line if its tokenizer model is not byte-level BPE."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # only text prompts need it

    from models.llm.gguf import field  # gguf.py imports torch: only for GGUF tokenizers

    kind = field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise UserError(
            f"{reader.path}: its tokenizer model {kind!r} is not supported for text prompts (byte-level "
            "BPE, 'gpt2', is); give token-id prompts instead"
        )
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges") or []
    types = field(reader, "tokenizer.ggml.token_type") or []
    if not tokens:
        raise UserError(f"{reader.path}: the GGUF file embeds no vocabulary (tokenizer.ggml.tokens)")
    try:
        vocab = {t: i for i, t in enumerate(tokens)}
        pairs = [tuple(m.split(" ", 1)) for m in merges if " " in m]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        special = [tokens[i] for i, t in enumerate(types) if int(t) in (CONTROL, USER_DEFINED)]
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special])

        def token(key: str) -> str | None:
            i = field(reader, key)
            return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

        bos = field(reader, "tokenizer.ggml.bos_token_id")
        add_bos = field(reader, "tokenizer.ggml.add_bos_token", False)
        bos_id = int(bos) if add_bos and bos is not None else None
        bos_token, eos_token = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    except Exception as e:  # malformed metadata: wrong types, merges outside the vocabulary
        why = first_line(e, 160)
        raise UserError(f"{reader.path}: its embedded tokenizer is malformed: {why}") from None
    return TextTokenizer(
        tok,
        f"{Path(reader.path).name} (embedded vocabulary)",
        field(reader, "tokenizer.chat_template"),
        bos_token,
        eos_token,
        bos_id,
    )


def from_folder(folder: Path) -> TextTokenizer | None:
    """`tokenizer.json` (+ `tokenizer_config.json`'s chat template) of a Hugging Face folder, or None."""
    from tokenizers import Tokenizer  # only text prompts need it

    folder = Path(folder)
    f = folder / "tokenizer.json"
    if not f.is_file():
        return None
    try:
        tok = Tokenizer.from_file(str(f))
    except Exception as e:
        raise UserError(f"{f} is not a readable tokenizer: {first_line(e, 160)}") from None
    template = bos = eos = None
    cfg_file = folder / "tokenizer_config.json"
    if cfg_file.is_file():
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            raise UserError(f"{cfg_file} is not valid JSON") from None
        if isinstance(cfg, dict):
            template = cfg.get("chat_template")
            if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
                named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
                template = named.get("default")
            template = template if isinstance(template, str) else None
            bos, eos = (v if isinstance(v, str) else None for v in (cfg.get("bos_token"), cfg.get("eos_token")))
    return TextTokenizer(tok, f"{folder} (tokenizer.json, tokenizer_config.json)", template, bos, eos)
