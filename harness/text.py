"""Text that came from files or flags, made safe to show: no terminal control characters.

Model names, claim texts and paths reach the terminal, CSV and Markdown. An escape sequence in
one could move the cursor, clear the screen or forge a hyperlink; so every output path strips
them (the console in harness/cli/common.py, the Markdown report in harness/report.py).
"""

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1: escapes, bells


def strip_control(text: str) -> str:
    """`text` without control characters (tab and newline are kept)."""
    return _CONTROL.sub("", str(text))
