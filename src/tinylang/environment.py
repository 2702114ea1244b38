"""Make every job of a workflow run the same tinylang as the process that planned it."""

from __future__ import annotations

import os
from pathlib import Path

import tinylang

SOURCE_VARIABLE = "TINYLANG_SOURCE"
"""The checkout the rules' conda environment installs (``workflow/envs/tinylang.post-deploy.sh``)."""


def package_source() -> Path | None:
    """The project folder (with ``pyproject.toml``) of the tinylang this process imported, or
    None for an installed (not editable) tinylang."""
    root = Path(tinylang.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def export_package_source() -> str | None:
    """Name this tinylang's project folder in ``TINYLANG_SOURCE``, which jobs and the conda
    environment's post-deploy script inherit."""
    source = package_source()
    if source is not None:
        os.environ[SOURCE_VARIABLE] = str(source)
    return None if source is None else str(source)
