"""The one exception type for mistakes a user can fix: the CLI prints it as one line, exit code 2.

It lives in models/, the lowest layer that raises it (an unknown preset, an unreadable weights
file), so that models/ never imports harness/; harness.errors re-exports it.
"""


class UserError(Exception):
    """Bad input from the user (unknown model, bad batch size, unreadable weights file, ...)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its message's first line, or its type when it has none."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
