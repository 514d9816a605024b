"""modelpower's harness: CLI, device discovery, timed runner, FLOP counting and results."""

__version__ = "0.1.0"
