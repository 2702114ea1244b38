"""A run's status file, written by the train stage and read by evaluation and aggregation:
``{"run", "status": "ok"}``, or for a run whose loss became NaN or infinite ``{"run", "status":
"failed", "step", "lr", "reason", "checkpoints"}`` (the checkpoint steps it kept)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tinylang.files import atomic_file

STATUSES = ("ok", "failed")


def write_run_status(status: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``status`` to ``path`` atomically (a killed job leaves the old file or none)."""
    if status.get("status") not in STATUSES:
        raise ValueError(f"a run status is one of {STATUSES}, not {status.get('status')!r}")
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(status, indent=2, allow_nan=False) + "\n")  # strict JSON


def read_run_status(path: str | os.PathLike) -> dict[str, Any]:
    """The status in ``path``, with ``run`` (from the file, else the name of the run directory
    holding it); an unreadable file or one without a known status is a ValueError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"run status file {path} is unreadable: {err}") from err
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        raise ValueError(f"run status file {path} has no status 'ok' or 'failed': {data!r}")
    if not data.get("run"):
        data["run"] = path.parent.name
    return data


__all__ = ["STATUSES", "read_run_status", "write_run_status"]
