"""The one exception type for mistakes a user can fix: the CLI prints it as one line, exit code 2."""


class UserError(Exception):
    """Bad input from the user (unknown model, bad batch size, unreadable weights file, ...)."""
