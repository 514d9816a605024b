"""The import layering: kernels/ <- models/ <- harness/, and inside harness/ each subpackage imports
only what its `__init__` docstring's "May import:" line names (harness.cli on top, imported by none)."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"
FORBIDDEN = {"kernels": ("harness", "models"), "models": ("harness",)}
ROOT_MODULES = {"__init__.py", "__main__.py", "errors.py", "inputs.py"}  # the truly shared modules


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "harness":  # `from harness import vision` imports a subpackage
                names |= {f"harness.{a.name}" for a in node.names}
    return names


def subpackages() -> list[str]:
    return sorted(p.name for p in HARNESS.iterdir() if (p / "__init__.py").exists())


def may_import(package: str) -> set[str] | None:
    """The subpackage's 'May import:' line as harness subpackage/module names (None: anything)."""
    doc = ast.get_docstring(ast.parse((HARNESS / package / "__init__.py").read_text())) or ""
    m = re.search(r"^May import: (.+)$", doc, re.M)
    assert m, f"harness/{package}/__init__.py says nothing of what it may import"
    if m.group(1).startswith("anything"):
        return None
    return {name.strip().rstrip(".").removeprefix("harness.") for name in m.group(1).split(",")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upward(package):
    for f in (ROOT / package).rglob("*.py"):
        bad = [m for m in imported(f) if m.split(".")[0] in FORBIDDEN[package]]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_harness_root_holds_only_the_shared_modules():
    loose = {p.name for p in HARNESS.glob("*.py")} - ROOT_MODULES
    assert not loose, f"harness/ root modules {sorted(loose)} belong in a subpackage"


@pytest.mark.parametrize("package", subpackages())
def test_subpackage_imports_only_what_it_declares(package):
    allowed = may_import(package)
    if allowed is None:
        return
    allowed |= {package, "DATA_DIR", "__version__"}  # itself, and what harness/__init__ holds
    for f in (HARNESS / package).rglob("*.py"):
        used = {m.split(".")[1] for m in imported(f) if m.startswith("harness.")}
        bad = sorted(used - allowed)
        assert not bad, f"{f.relative_to(ROOT)} imports harness.{bad}, not in its package's 'May import:' line"


def test_shared_modules_import_no_subpackage():
    for name in ROOT_MODULES - {"__main__.py", "__init__.py"}:
        used = {m.split(".")[1] for m in imported(HARNESS / name) if m.startswith("harness.")}
        assert used <= {"errors"}, f"harness/{name} imports harness.{sorted(used)}"


def test_only_the_cli_imports_the_cli():
    for f in HARNESS.rglob("*.py"):
        if "cli" in f.relative_to(HARNESS).parts or f.name == "__main__.py":
            continue
        bad = [m for m in imported(f) if m.startswith("harness.cli")]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_top_level_packages_are_ours():
    """No installed distribution shadows our top-level names (transformers 5.25 requires PyPI's
    `kernels`, whose module name is our kernels/ package's: pyproject keeps it below 5.25)."""
    import harness
    import kernels
    import models

    for pkg in (harness, kernels, models):
        assert Path(pkg.__file__).resolve().parent.parent == ROOT, pkg.__file__
