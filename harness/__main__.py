"""`python -m harness` runs the modelpower CLI (where the console script is not installed)."""

from harness.cli import main

main()
