"""Prompt files for `modelpower run-llm --prompts FILE`, by their form:

- token ids: every non-empty line is space-separated integers (one prompt per line);
- `.jsonl`: one JSON object per line, `{"prompt": "...", "output_len": 128}` (output_len optional);
- `.json`: ShareGPT format, a list of `{"conversations": [{"from": "human", "value": ...},
  {"from": "gpt", "value": ...}, ...]}`: the first human turn is the prompt, rendered through the
  checkpoint's chat template; the first answer's token length is the record's output length;
- anything else: text, one prompt per line.

Text needs the checkpoint's tokenizer (models/llm/tokenizer.py). `--num-prompts N` samples N records
with the seed; records with nothing usable are skipped, and a file with none is one line.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.inputs import read_text

HUMAN, ANSWER = ("human", "user"), ("gpt", "assistant", "chatgpt", "bard", "model")


@dataclass
class Prompt:
    ids: list[int]
    output_len: int | None = None  # the record's own (JSONL output_len, ShareGPT answer length)
    text: str | None = None


def _token_lines(lines: list[str]) -> list[Prompt] | None:
    try:
        return [Prompt([int(v) for v in ln.split()]) for ln in lines]
    except ValueError:
        return None


def _need(tokenizer, path: Path, why_none: str | None):
    if tokenizer is None:
        raise UserError(
            f"prompts file {path} holds text, and the model has no tokenizer "
            f"({why_none or 'none found'}): give token-id lines instead"
        )
    return tokenizer


def read_prompt_file(
    path: Path, tokenizer, vocab: int, num_prompts: int | None = None, seed: int = 0, why_none: str | None = None
) -> list[Prompt]:
    """The file's prompts as token ids in [0, vocab), sampled to `num_prompts` with `seed`
    (`why_none`: why there is no tokenizer, said if the file holds text)."""
    path = Path(path)
    text = read_text(path, "prompts file").removeprefix("\ufeff")  # a byte-order mark is not part of line 1
    lines = [ln for ln in text.splitlines() if ln.strip()]
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        prompts = _jsonl(path, lines, tokenizer, why_none)
    elif suffix == ".json":
        prompts = _sharegpt(path, text, tokenizer, why_none)
    else:
        prompts = _token_lines(lines)
        if prompts is None:
            tok = _need(tokenizer, path, why_none)
            prompts = [Prompt(tok.encode(ln), None, ln) for ln in lines]
    prompts = [p for p in prompts if p.ids]
    if not prompts:
        raise UserError(f"prompts file {path}: no usable prompt in it")
    for p in prompts:
        if any(not (0 <= v < vocab) for v in p.ids):
            raise UserError(f"prompts file {path}: token ids must be in [0, {vocab})")
    if num_prompts is not None:
        if num_prompts < 1:
            raise UserError(f"--num-prompts must be >= 1, got {num_prompts}")
        if num_prompts < len(prompts):
            prompts = random.Random(seed).sample(prompts, num_prompts)
    return prompts


def _jsonl(path: Path, lines: list[str], tokenizer, why_none) -> list[Prompt]:
    out = []
    for n, ln in enumerate(lines, 1):
        try:
            rec = json.loads(ln)
        except (ValueError, RecursionError):
            raise UserError(f"prompts file {path}, line {n}: not a JSON object") from None
        prompt = rec.get("prompt") if isinstance(rec, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            continue
        n_out = rec.get("output_len")
        if n_out is not None and (isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1):
            raise UserError(f"prompts file {path}, line {n}: output_len must be a positive whole number")
        out.append(Prompt(_need(tokenizer, path, why_none).encode(prompt), n_out, prompt))
    return out


def _sharegpt(path: Path, text: str, tokenizer, why_none) -> list[Prompt]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise UserError(f"prompts file {path}: not valid JSON") from None
    if not isinstance(doc, list):
        raise UserError(f"prompts file {path}: a ShareGPT file is a JSON list of records with 'conversations'")
    out = []
    for rec in doc:
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(turns, list):
            continue
        turns = [t for t in turns if isinstance(t, dict) and isinstance(t.get("value"), str)]
        first = next((i for i, t in enumerate(turns) if t.get("from") in HUMAN and t["value"].strip()), None)
        if first is None:
            continue
        tok = _need(tokenizer, path, why_none)
        question = turns[first]["value"]
        ids = tok.chat([{"role": "user", "content": question}]) if tok.chat_template else tok.encode(question)
        answer = next((t["value"] for t in turns[first + 1 :] if t.get("from") in ANSWER), None)
        n_out = len(tok.encode(answer)) if answer else None
        out.append(Prompt(ids, n_out or None, question))
    return out
