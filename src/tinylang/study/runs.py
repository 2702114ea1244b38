"""A study's runs: their coordinates (``Run.coords()``: ``run, language, mixer, d_model,
n_layers, pos_embed, lr, seed`` and any other swept axis), the configuration they belong to
(the coordinates without ``run``, ``lr`` and ``seed``) and their train-stage status."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

# The coordinates every run has (``Run.coords()`` adds any other swept axis).
COORDINATES = ("run", "language", "mixer", "d_model", "n_layers", "pos_embed", "lr", "seed")
NOT_CONFIGURATION = ("run", "lr", "seed")

def run_table(coords: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """One row per run: its coordinates (``Run.coords()`` of every run of the study)."""
    table = pd.DataFrame(list(coords))
    if table.empty or "run" not in table:
        raise ValueError("no runs")
    return table

def configuration_columns(runs: pd.DataFrame) -> list[str]:
    """The coordinates that identify a configuration (everything but run, lr and seed)."""
    return [c for c in runs.columns if c not in NOT_CONFIGURATION]

STATUS_COLUMNS = ("status", "failed_step", "failed_lr", "failure")

def run_statuses(statuses: Iterable[Mapping[str, Any] | str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """Run name → status (``{"status": "ok"}`` or ``{"status": "failed", "step", "lr", "reason"}``),
    from status dicts or the train stage's status files (``runs/<run>/status.json``)."""
    from tinylang.training.status import read_run_status

    out = {}
    for item in statuses:
        status = dict(item) if isinstance(item, Mapping) else read_run_status(item)
        if status.get("status") not in ("ok", "failed") or "run" not in status:
            raise ValueError(f"a run status needs a run and status 'ok' or 'failed': {status!r}")
        out[str(status["run"])] = status
    return out

def with_status(runs: pd.DataFrame, statuses: Mapping[str, Mapping[str, Any]] | None) -> pd.DataFrame:
    """``runs`` with ``status`` (ok / failed), ``failed_step``, ``failed_lr`` and ``failure``
    (<NA> / NaN / None for finished runs). ``statuses=None``: every run finished."""
    if statuses is not None:
        missing = sorted(set(runs["run"]) - set(statuses))
        if missing:
            raise ValueError(f"no status for run(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    failed = {run: s for run, s in (statuses or {}).items() if s.get("status") == "failed"}
    table = runs.copy()
    table["status"] = table["run"].map(lambda run: "failed" if run in failed else "ok")
    table["failed_step"] = pd.array([failed[r].get("step") if r in failed else None for r in table["run"]],
                                    dtype="Int64")
    table["failed_lr"] = [float(failed[r].get("lr", math.nan)) if r in failed else math.nan for r in table["run"]]
    table["failure"] = [failed[r].get("reason") if r in failed else None for r in table["run"]]
    return table


__all__ = ["COORDINATES", "NOT_CONFIGURATION", "STATUS_COLUMNS", "configuration_columns", "run_statuses", "run_table", "with_status"]
