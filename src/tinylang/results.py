"""A finished study's tables in one call, for notebooks and scripts.

``load_study("results/ar-cpu")`` reads the aggregate tables the workflow writes under
``results/<study>/study/`` (the rule ``study_tables``) and returns them as DataFrames, each with
a ``study`` column first; ``load_studies([...])`` does the same for several studies and stacks
each table, so two studies compare with one ``groupby("study")``. Every table is long-format, as
written: pivot it for a wide view, e.g.
``results.selection.pivot_table(index="mixer", columns="d_model", values="mean")``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from tinylang.tables import read_table
from tinylang.targets import MECHANISM_TABLES, STUDY_TABLES


@dataclass(frozen=True)
class StudyResults:
    """One or more studies' aggregate tables (``study`` names the study of each row).

    ``runs``: one row per run with its coordinates and status; ``run_accuracy``: every run's
    accuracy per split at its final checkpoint; ``selection``: the best learning rate per
    configuration with its seed interval; ``curves``: per-checkpoint accuracy; ``mechanism``:
    Attrib per run, checkpoint, component, layer and readout; ``dropped_runs``: the runs the
    paper's filter leaves out. The last two are ``None`` for a study without interventions."""

    runs: pd.DataFrame
    run_accuracy: pd.DataFrame
    selection: pd.DataFrame
    curves: pd.DataFrame
    mechanism: pd.DataFrame | None = None
    dropped_runs: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """Table name → frame, for the tables this study has."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def load_study(path: str | os.PathLike) -> StudyResults:
    """The tables of the study whose results folder is ``path`` (``results/<study>``)."""
    folder = Path(path)
    tables = folder / "study"
    if not tables.is_dir():
        what = "no such folder" if not folder.is_dir() else "its tables are not written yet"
        raise FileNotFoundError(f"{folder}: {what}; run the study first (snakemake --cores all with its "
                                f"--configfile), or name its results folder, e.g. results/<study>")
    missing = [name for name in STUDY_TABLES if not (tables / f"{name}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"{tables}: missing {', '.join(f'{m}.parquet' for m in missing)}; write them: "
                                f"snakemake --cores all study_tables (with the study's --configfile)")
    frames = {name: _with_study(read_table(tables / f"{name}.parquet"), folder.name)
              for name in (*STUDY_TABLES, *MECHANISM_TABLES) if (tables / f"{name}.parquet").is_file()}
    return StudyResults(**frames)


def load_studies(paths: Iterable[str | os.PathLike]) -> StudyResults:
    """Several studies' tables, each stacked over the studies (a table only some studies have
    keeps their rows; ``None`` if none has it)."""
    paths = [Path(path) for path in paths]
    names = [path.name for path in paths]
    if not paths:
        raise ValueError("load_studies: no results folders given")
    if len(set(names)) < len(names):
        raise ValueError(f"load_studies: two results folders name the same study: {[str(p) for p in paths]}")
    loaded = [load_study(path) for path in paths]
    stacked = {}
    for f in fields(StudyResults):
        frames = [getattr(study, f.name) for study in loaded if getattr(study, f.name) is not None]
        stacked[f.name] = pd.concat(frames, ignore_index=True) if frames else None
    return StudyResults(**stacked)


def _with_study(table: pd.DataFrame, study: str) -> pd.DataFrame:
    return table.assign(study=study)[["study", *table.columns]]


__all__ = ["StudyResults", "load_studies", "load_study"]
