"""The best learning rate per configuration: each run's final accuracy per split, the rate
whose mean over seeds on the selection split is highest, and its report-split accuracy with a
95% Student-t interval over seeds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd

from tinylang.study.runs import configuration_columns

CONFIDENCE = 0.95

def selection_splits(language_splits: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, str]]:
    """Per language, ``(select_split, report_split)``: dev/test where there is a dev split,
    otherwise the test split (or the language's last split) for both."""
    chosen = {}
    for language, splits in language_splits.items():
        splits = list(splits)
        report = "test" if "test" in splits else splits[-1]
        chosen[language] = ("dev" if "dev" in splits else report, report)
    return chosen

def final_accuracy(behaviour: pd.DataFrame, runs: pd.DataFrame, metric: str = "accuracy",
                   failed: Iterable[str] = (), language_splits: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """Each run's ``metric`` (all query types) per split at its last evaluated step, with the
    run's coordinates: coordinates + ``step, split, metric, value``.

    A ``failed`` run has no final step: it gets ``value`` NaN and ``step`` <NA> on each split
    its language is evaluated on (those of its own and its language's other runs' rows; with
    none, ``language_splits``'s selection and report splits)."""
    failed = set(failed)
    rows = behaviour[(behaviour["metric"] == metric) & (behaviour["query_type"] == "ALL")]
    language_of = runs.set_index("run")["language"]
    evaluated = rows.assign(language=rows["run"].map(language_of))
    rows = rows[~rows["run"].isin(failed)]
    rows = rows[rows["step"] == rows.groupby("run")["step"].transform("max")]
    missing = sorted(set(runs["run"]) - set(rows["run"]) - failed)
    if missing:
        raise ValueError(f"no {metric!r} rows for run(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    table = runs[~runs["run"].isin(failed)].merge(rows[["run", "step", "split", "metric", "value"]], on="run", how="inner")
    if not failed:
        return table
    fallback = selection_splits(language_splits or {})
    placeholders = []
    for run in runs.loc[runs["run"].isin(failed), "run"]:
        language = language_of[run]
        splits = list(dict.fromkeys(evaluated.loc[(evaluated["run"] == run) | (evaluated["language"] == language),
                                                  "split"]))
        if not splits and language in fallback:
            splits = list(dict.fromkeys(fallback[language]))
        placeholders += [{"run": run, "split": split, "metric": metric, "value": math.nan} for split in splits]
    failed_rows = runs.merge(pd.DataFrame(placeholders, columns=["run", "split", "metric", "value"]), on="run")
    table = pd.concat([table, failed_rows.assign(step=pd.NA)[table.columns]], ignore_index=True)
    return table.astype({"step": "Int64", "value": "float64"})

def seed_interval(values: pd.Series) -> pd.Series:
    """Mean and 95% Student-t interval of ``values`` (one per seed); NaN bounds for one seed."""
    values = values.dropna()
    n = len(values)
    mean = values.mean() if n else math.nan
    if n < 2:
        return pd.Series({"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "n_seeds": n})
    from scipy import stats  # here, not at the top: planning a workflow imports this package

    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return pd.Series({"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n_seeds": n})

def select_best(run_accuracy: pd.DataFrame, splits: Mapping[str, tuple[str, str]],
                failed: Iterable[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The best learning rate per configuration, and ``run_accuracy`` with a ``selected`` column.

    Returns ``(selection, run_accuracy)``. ``selection`` has the configuration columns, the
    selected ``lr``, ``select_split``, ``report_split``, ``metric``, ``select_mean`` (the mean
    over seeds the choice was made on) and ``mean, ci_low, ci_high, n_seeds`` on the report split.
    A learning rate with a ``failed`` run in the configuration is not a candidate.
    """
    config = [c for c in configuration_columns(run_accuracy) if c not in ("step", "split", "metric", "value")]
    table = run_accuracy.copy()
    table["select_split"] = table["language"].map(lambda lang: splits[lang][0])
    table["report_split"] = table["language"].map(lambda lang: splits[lang][1])
    keys = [*config, "metric"]

    candidates = table
    failed = set(failed)
    if failed:
        unstable = table.loc[table["run"].isin(failed), [*keys, "lr"]].drop_duplicates()
        marked = table.merge(unstable.assign(_unstable=True), on=[*keys, "lr"], how="left")
        candidates = table[marked["_unstable"].isna().to_numpy()]

    on_select = candidates[candidates["split"] == candidates["select_split"]]
    means = on_select.groupby([*keys, "lr"], dropna=False)["value"].mean().rename("select_mean").reset_index()
    means = means.sort_values([*keys, "select_mean", "lr"], ascending=[True] * len(keys) + [False, True])
    best = means.drop_duplicates(keys, keep="first")

    chosen = candidates.merge(best[[*keys, "lr", "select_mean"]], on=[*keys, "lr"])
    reported = chosen[chosen["split"] == chosen["report_split"]]
    group = [*keys, "lr", "select_split", "report_split", "select_mean"]
    if reported.empty:  # every run failed
        intervals = pd.DataFrame(columns=[*group, "mean", "ci_low", "ci_high", "n_seeds"])
    else:
        intervals = reported.groupby(group, dropna=False)["value"].apply(seed_interval).unstack().reset_index()
    intervals["n_seeds"] = intervals["n_seeds"].astype(int)

    selected_runs = set(chosen["run"])
    table["selected"] = table["run"].isin(selected_runs)
    return intervals, table.drop(columns=["select_split", "report_split"])


__all__ = ["CONFIDENCE", "final_accuracy", "seed_interval", "select_best", "selection_splits"]
