"""Errors and messages the user sees: one line each, safe to print.

- `UserError`: a mistake the user can fix (defined in models/errors.py so the model layer can raise it,
  as is `first_line`).
  The CLI prints it as one line and exits 2.
- `first_line`: any exception as one short line, for notes and failure records.
- `strip_control`: text that came from files or flags without terminal control characters. Model
  names, claim texts and paths reach the terminal, CSV and Markdown; an escape sequence in one
  could move the cursor, clear the screen or forge a hyperlink, so every output path strips them
  (the console in harness/cli/common.py, the Markdown report in harness/verdicts/report.py).
"""

import re

from models.errors import UserError, first_line

__all__ = ["UserError", "first_line", "strip_control"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1: escapes, bells


def strip_control(text: str) -> str:
    """`text` without control characters (tab and newline are kept)."""
    return _CONTROL.sub("", str(text))
