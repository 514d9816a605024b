"""The import layering: kernels/ <- models/ <- harness/ (harness.cli on top); nothing imports upward."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"kernels": ("harness", "models"), "models": ("harness",)}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upward(package):
    for f in (ROOT / package).rglob("*.py"):
        bad = [m for m in imported(f) if m.split(".")[0] in FORBIDDEN[package]]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_only_the_cli_imports_the_cli():
    for f in (ROOT / "harness").rglob("*.py"):
        if "cli" in f.relative_to(ROOT / "harness").parts or f.name == "__main__.py":
            continue
        bad = [m for m in imported(f) if m.startswith("harness.cli")]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
