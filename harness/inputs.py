"""Everything a user hands in, checked before any work starts: flag values and input files.

Flag checks (`check_number`, `parse_sizes`, `check_writable`) raise a UserError naming the flag,
so a mistake costs nothing and leaves no file behind.

Input files that anyone may have written (results, peaks, claims, specs, prompts):

Each reader makes one clear line (a UserError naming the file) of every way a file can be wrong:
missing or unreadable, not a regular file (a FIFO would block, /dev/zero never ends), too large,
not UTF-8, not valid JSON or TOML, nested too deeply for the parser. What the content must hold is
checked by the file kind's own loader (results.py, claims.py, specs.py).
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
import tomllib
from pathlib import Path

from harness.errors import UserError

SEED = 0  # the default seed of random weights, generated inputs and sampling
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


# -- flag values


def split_list(values: list[str] | None, flag: str) -> list[str]:
    """A list option's items: comma lists and repeated flags ('a,b' 'c' -> [a, b, c]), stripped. An
    empty item ('torch,,', a trailing comma, '') is refused in one line, never skipped."""
    items: list[str] = []
    for v in values or []:
        for part in str(v).split(","):
            if not part.strip():
                raise UserError(f"{flag} has an empty item in {str(v)!r}: give names or numbers separated by commas")
            items.append(part.strip())
    return items


def parse_sizes(values: list[str], what: str = "batch size") -> list[int]:
    """'1,8,32' and repeated flags -> [1, 8, 32]; each must be a positive integer; repeats dropped."""
    sizes: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                raise UserError(f"{what} has an empty item in {str(v)!r}: give positive integers separated by commas")
            try:
                n = int(part)
            except ValueError:
                raise UserError(f"{what} must be a positive integer, got {part!r}") from None
            if n <= 0:
                raise UserError(f"{what} must be a positive integer, got {n}")
            sizes.append(n)
    if not sizes:
        raise UserError(f"no {what} given")
    return list(dict.fromkeys(sizes))  # -b 1,1 measures batch 1 once


def check_writable(folder: Path, what: str = "results") -> Path:
    """Create `folder` if needed and prove a file can be written there."""
    try:
        if folder.is_symlink() and not folder.exists():
            raise UserError(
                f"cannot write {what} to {folder}: it is a symbolic link to {os.readlink(folder)}, which does not exist"
            )
        if folder.exists() and not folder.is_dir():
            raise UserError(f"cannot write {what} to {folder}: it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write {what} to {folder}: {e.strerror or e}") from None
    return folder


def check_number(
    flag: str, value: float, low: float | None = None, high: float | None = None, above: bool = False
) -> None:
    """A finite number in [low, high] (`above`: strictly above low); one line naming the flag otherwise."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if above else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f"> {low:g}" if above else f">= {low:g}")
        hi = "" if high is None else f"<= {high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise UserError(f"{flag} must be a finite number{' ' + bounds if bounds else ''}, got {value}")
