"""The package as pip installs it: the built wheel holds every subpackage, module and data file.

`pip install -e .` hides a missing subpackage (the checkout is on the path); a wheel does not. This
builds the wheel (no network: no build isolation) and compares its file list with the source tree.
`.ci/wheel-smoke` then installs that wheel into a fresh environment and runs the main job.

The wheel is built once per CI run: `.ci/run` sets MODELPOWER_WHEEL_DIR to an empty folder, this test
builds the wheel into it, and `.ci/wheel-smoke` installs that file (it builds its own when the folder
holds none). Without the variable (a developer running this test) the wheel goes to a temporary folder.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "kernels", "models")


def source_files() -> set[str]:
    """What the wheel must carry: every module of the three packages and every data file."""
    want = set()
    for top in PACKAGES:
        for f in (ROOT / top).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and not f.name.startswith("."):
                want.add(f.relative_to(ROOT).as_posix())
    return want


def test_every_folder_with_modules_is_a_package():
    """A folder of modules without __init__.py would be left out of the wheel by package finding."""
    for top in PACKAGES:
        for d in (ROOT / top).rglob("*"):
            if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")):
                assert (d / "__init__.py").exists(), f"{d.relative_to(ROOT)} has modules but no __init__.py"


def build_wheel(dest: Path) -> Path:
    """The wheel of a clean copy of the tree (an in-tree build/ folder could carry stale modules), built
    into MODELPOWER_WHEEL_DIR when it is set (for .ci/wheel-smoke to install), else into dest."""
    shared = os.environ.get("MODELPOWER_WHEEL_DIR")
    out = Path(shared) if shared else dest / "dist"
    src = dest / "src"
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    for top in PACKAGES:
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (wheel,) = out.glob("modelpower-*.whl")
    return wheel


@pytest.mark.slow  # pip builds the wheel
def test_wheel_holds_every_module_and_data_file(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(source_files() - names)
    assert not missing, f"left out of the wheel: {missing}"
    assert "harness/data/accelerators.toml" in names and "harness/data/report.html.j2" in names
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "modelpower = harness.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
