"""Make every job of a workflow import the same tinylang as the process that planned it."""

from __future__ import annotations

import os
from pathlib import Path

import tinylang


def export_package_path() -> str:
    """Prepend the directory holding this tinylang package to PYTHONPATH, which jobs inherit
    (conda environments of the rules list tinylang's dependencies but not tinylang itself)."""
    root = str(Path(tinylang.__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return root
