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
    m = re.search(r"^May import: (.+?)(?:\n\n|\Z)", doc, re.M | re.S)  # the line and its continuation lines
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


# ---- models/ and kernels/: one home per family, each subpackage's "May import:" line enforced

FAMILIES = {"kernels": ("common", "vision", "llm"), "models": ("vision", "llm")}
SHARED_MODULES = {"kernels": {"__init__.py"}, "models": {"__init__.py", "errors.py"}}


def declared(package_dir: Path) -> set[str]:
    """The kernels./models. names a family's 'May import:' line lists (empty for 'nothing')."""
    doc = ast.get_docstring(ast.parse((package_dir / "__init__.py").read_text())) or ""
    m = re.search(r"^May import: (.+?)(?:\n\n|\Z)", doc, re.M | re.S)
    assert m, f"{package_dir.relative_to(ROOT)}/__init__.py says nothing of what it may import"
    return {n.strip().rstrip(".") for n in m.group(1).split(",") if n.strip().startswith(("kernels.", "models."))}


@pytest.mark.parametrize("top", sorted(FAMILIES))
def test_family_folders_hold_every_module(top):
    loose = {p.name for p in (ROOT / top).glob("*.py")} - SHARED_MODULES[top]
    assert not loose, f"{top}/ root modules {sorted(loose)} belong in {'/, '.join(FAMILIES[top])}/"
    subs = sorted(p.name for p in (ROOT / top).iterdir() if (p / "__init__.py").exists())
    assert subs == sorted(FAMILIES[top])


@pytest.mark.parametrize("top,family", [(t, f) for t, fams in sorted(FAMILIES.items()) for f in fams])
def test_family_imports_only_what_it_declares(top, family):
    here = f"{top}.{family}"
    allowed = declared(ROOT / top / family) | {here, "models.errors"}
    for f in (ROOT / top / family).rglob("*.py"):
        for m in imported(f):
            if m.split(".")[0] not in ("kernels", "models"):
                continue
            assert any(m == a or m.startswith(a + ".") for a in allowed), (
                f"{f.relative_to(ROOT)} imports {m}, not in its package's 'May import:' line"
            )


def test_no_module_imports_another_modules_private_names():
    for top in ("kernels", "models", "harness"):
        for f in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FAMILIES:
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{f.relative_to(ROOT)} imports {private} from {node.module}"


def test_measurement_primitives_import_no_model():
    for f in (HARNESS / "measure").rglob("*.py"):
        bad = [m for m in imported(f) if m.split(".")[0] == "models"]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles():
    """Every import counts (at module top, inside functions, under TYPE_CHECKING): a module graph
    over harness/, models/ and kernels/ without cycles. `from pkg import name` is an edge to the
    submodule pkg.name when there is one, else to pkg."""
    files = [f for top in ("harness", "models", "kernels") for f in (ROOT / top).rglob("*.py")]
    names = {module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    for f in files:
        edges = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom) and node.module in names and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & names
                edges |= subs if subs else {node.module}
        graph[module_name(f)] = edges - {module_name(f)}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            assert state.get(m) != 1, "import cycle: " + " -> ".join([*path[path.index(m) :], m])
            if m not in state:
                visit(m, [*path, m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
