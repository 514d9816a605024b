"""The one exception type for mistakes a user can fix: the CLI prints it as one line, exit code 2.

It lives in models/, the lowest layer that raises it (an unknown preset, an unreadable weights
file), so that models/ never imports harness/; harness.errors re-exports it.
"""


class UserError(Exception):
    """Bad input from the user (unknown model, bad batch size, unreadable weights file, ...)."""
