"""The tables the per-run figures are drawn from (training curves, accuracy, Attrib, language
statistics), and reading tidy tables back."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import pandas as pd

from tinylang.tables import read_table

PathLike = str | os.PathLike


def concat_tables(paths: Iterable[PathLike]) -> pd.DataFrame:
    """Concatenate tidy Parquet tables (same columns) into one."""
    frames = [read_table(p) for p in paths]
    if not frames:
        raise ValueError("no tables to concatenate")
    return pd.concat(frames, ignore_index=True)


def latest_step(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last step."""
    return df[df["step"] == df.groupby("run")["step"].transform("max")]


def training_table(logs: Mapping[str, PathLike]) -> pd.DataFrame:
    """Train logs of several runs, long format: run, step, metric, value."""
    frames = []
    for run, path in logs.items():
        df = read_table(path)
        long = df.melt(id_vars=["step"], value_vars=["loss", "lr"], var_name="metric", value_name="value")
        long.insert(0, "run", run)
        frames.append(long)
    return pd.concat(frames, ignore_index=True)


def accuracy_table(paths: Iterable[PathLike]) -> pd.DataFrame:
    """Answer accuracy over all query types, per run, step and split."""
    df = concat_tables(paths)
    keep = (df["metric"] == "accuracy") & (df["query_type"] == "ALL")
    return df.loc[keep, ["run", "step", "split", "metric", "value", "n"]].sort_values(["run", "split", "step"])


def language_stats_table(language_dirs: Mapping[str, PathLike]) -> pd.DataFrame:
    """Per-example generation statistics of every split of every language, long format:
    language, split, statistic, value (the statistics each language lists in meta.json)."""
    from tinylang.languages import read_meta, read_split

    frames = []
    for language, directory in language_dirs.items():
        meta = read_meta(directory)
        for split, stats in meta["stats"].items():
            df = read_split(directory, split)[list(stats)]
            long = df.melt(var_name="statistic", value_name="value")
            long.insert(0, "split", split)
            long.insert(0, "language", language)
            frames.append(long)
    return pd.concat(frames, ignore_index=True)


def report_split(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of one split of a table with several (interventions on dev and test): ``test``,
    the split the study reports on, where it is there, else the first one."""
    if "split" not in table.columns or table["split"].nunique() <= 1:
        return table
    splits = list(dict.fromkeys(table["split"].dropna()))
    return table[table["split"] == ("test" if "test" in splits else splits[0])]


def attribution_table(paths: Iterable[PathLike], min_gap: float | None = None) -> pd.DataFrame:
    """The paper's Attrib at the latest step of each run, for the @Key/@Value/@Query readouts
    (last layer's block_input, in-context key corrupted): one row per run and readout with
    ``run, step, readout, position, attrib`` (ratio of means), ``attrib_example_median``, ``gap``,
    ``n`` and ``kept`` (the run filter: ``gap > min_gap``, by default ``MIN_GAP`` = 0.01), on the
    ``report_split`` where the runs were evaluated on several."""
    from tinylang.evaluation.attribution import MIN_GAP, attributions, readout_rows

    df = report_split(latest_step(concat_tables(paths)))
    chosen = readout_rows(attributions(df, MIN_GAP if min_gap is None else min_gap))
    keys = [c for c in ("run", "step", "split") if c in chosen]
    columns = keys + ["readout", "position", "attrib", "attrib_example_median", "gap", "n", "kept"]
    return chosen[columns].reset_index(drop=True)
