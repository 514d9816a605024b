"""The one exception type for mistakes a user can fix (defined in models/errors.py, re-exported)."""

from models.errors import UserError

__all__ = ["UserError"]
