"""Reading input files that anyone may have written: results, peaks, claims, specs, prompts.

Each reader makes one clear line (a UserError naming the file) of every way a file can be wrong:
missing or unreadable, not a regular file (a FIFO would block, /dev/zero never ends), too large,
not UTF-8, not valid JSON or TOML, nested too deeply for the parser. What the content must hold is
checked by the file kind's own loader (results.py, claims.py, specs.py).
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

from harness.errors import UserError

MAX_INPUT_BYTES = 256 << 20  # a result file of 10^5 points is ~300 MB less than this; /dev/zero is not one


def read_input(path: Path, what: str = "file") -> bytes:
    """The bytes of an input file: a regular file (not a FIFO or a device, which could block or
    never end) of at most MAX_INPUT_BYTES; one UserError otherwise."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"cannot read {what} {path}: not a regular file")
    if st.st_size > MAX_INPUT_BYTES:
        raise UserError(f"cannot read {what} {path}: {st.st_size / 2**20:.0f} MiB is too large for one")
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None


def read_json(path: Path, what: str = "file") -> object:
    """A JSON file from anywhere: unreadable, not UTF-8, not JSON or absurdly nested is one UserError."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UserError(f"cannot read {what} {path}: not valid JSON ({str(e)[:120] or 'nested too deeply'})") from None


def read_text(path: Path, what: str = "file") -> str:
    """An input file's text (UTF-8)."""
    try:
        return read_input(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"cannot read {what} {path}: not UTF-8 text") from None


def read_toml(path: Path, what: str = "file") -> dict:
    """A TOML input file as a dict."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{what} {path} is not valid TOML: {e}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is not valid TOML: nested too deeply") from None
