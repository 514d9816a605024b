"""Provenance recorded with every result: command, versions, hardware, time."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from harness.machine.devices import detect_machine

PACKAGES = (
    "modelpower",
    "torch",
    "torchvision",
    "numpy",
    "numba",
    "numba-cuda",
    "onnx",
    "onnxruntime-gpu",
    "onnxruntime",
    "nvidia-ml-py",
    "typer",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def command_line() -> str:
    return shlex.join(["modelpower", *sys.argv[1:]])


def package_version() -> str:
    """modelpower's installed version (pyproject's `version`), or "unknown" when run from a bare checkout."""
    try:
        return importlib.metadata.version("modelpower")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str | None]:
    v: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            v[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            v[name] = None
    v["torch_cuda"] = torch.version.cuda
    v["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    v["git_commit"] = _git_commit()
    return v


def _git_commit() -> str | None:
    """The checkout's commit; None for an installed package (site-packages may sit inside some
    other git work tree, such as a virtual environment in a clone, whose commit is not ours)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Everything about this software and machine that a result must carry."""
    return {
        "command": command_line(),
        "versions": versions(),
        "machine": detect_machine().to_dict(),
        "torch_threads": torch.get_num_threads(),
    }
