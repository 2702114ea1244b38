"""A study's aggregate tables: per-run results joined to the sweep coordinates, the best
learning rate per configuration picked on the selection split, and seed intervals.

Every table carries the run's coordinates (``run_table``): ``run, language, mixer, d_model,
n_layers, pos_embed, lr, seed`` and any other swept axis. A *configuration* is a row of those
coordinates without ``run``, ``lr`` and ``seed``; for each, the learning rate whose mean
accuracy over seeds on the selection split is highest is *selected* (ties: the smaller rate),
and its accuracy on the report split is given as a mean with a 95% Student-t interval over
seeds. Languages with a ``dev`` split select on dev and report on test; languages without one
select and report on the same split (``test``), which the ``select_split``/``report_split``
columns say.

*Failed runs* (the train stage stopped them at a NaN or infinite loss; their status files say
so) are listed in ``runs`` with ``status`` ``failed``, the ``failed_step``, the learning rate of
that step (``failed_lr``) and the ``failure``; finished runs have ``status`` ``ok``. A failed run
stays in ``run_accuracy`` with NaN values (and ``step`` <NA>), one row per split its language
is evaluated on, and is never selected. A learning rate at which any seed of a configuration
failed is not a candidate for that configuration (a rate that diverges is not chosen on the
strength of its surviving seeds); a configuration whose every rate had a failure gets no
selection row. Without failures every table is what it was before runs could fail. ``curves``
keeps a failed run's evaluated steps; ``mechanism`` leaves failed runs out (their last analysed
step is not the end of training).

The mechanism tables carry the paper's Attrib (a ratio of means, see
``tinylang.evaluation.attribution``) for *every* run, flagged ``kept`` by the paper's run filter
(the corruption lowered the mean answer probability by more than ``MIN_GAP``); ``dropped_runs``
lists the runs the mechanism figures leave out, with the reason. The mechanism figures draw every
kept run, over all learning rates and widths (as the paper's); the best-learning-rate selection
is for the accuracy figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from scipy import stats

from .tables import PathLike, concat_tables

NOT_CONFIGURATION = ("run", "lr", "seed")
CONFIDENCE = 0.95


def run_table(coords: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """One row per run: its coordinates (``Run.coords()`` of every run of the study)."""
    table = pd.DataFrame(list(coords))
    if table.empty or "run" not in table:
        raise ValueError("no runs")
    return table


def configuration_columns(runs: pd.DataFrame) -> list[str]:
    """The coordinates that identify a configuration (everything but run, lr and seed)."""
    return [c for c in runs.columns if c not in NOT_CONFIGURATION]


def selection_splits(language_splits: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, str]]:
    """Per language, ``(select_split, report_split)``: dev/test where there is a dev split,
    otherwise the test split (or the language's last split) for both."""
    chosen = {}
    for language, splits in language_splits.items():
        splits = list(splits)
        report = "test" if "test" in splits else splits[-1]
        chosen[language] = ("dev" if "dev" in splits else report, report)
    return chosen


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


MECHANISM_COLUMNS = ["run", "step", "split", "corrupted", "component", "layer", "readout", "position", "attrib",
                     "attrib_example_median", "gap", "p_clean", "p_corrupted", "p_patched", "n", "kept", "min_gap"]


def _min_gap(value: float | None) -> float:
    """The mechanism run filter's threshold: ``value``, or by default the paper's ``MIN_GAP`` (0.01)."""
    from tinylang.evaluation.attribution import MIN_GAP

    return MIN_GAP if value is None else float(value)


def _last_analysed(interventions: pd.DataFrame, failed: Iterable[str]) -> pd.DataFrame:
    rows = interventions[~interventions["run"].isin(set(failed))]
    return rows[rows["step"] == rows.groupby("run")["step"].transform("max")]


def mechanism_table(interventions: pd.DataFrame, runs: pd.DataFrame, selected: Iterable[str],
                    failed: Iterable[str] = (), min_gap: float | None = None) -> pd.DataFrame:
    """The paper's Attrib (ratio of means, ``tinylang.evaluation.attribution``) at @Key/@Value/@Query
    for every corrupted item, component and layer the intervention tables hold, at each run's last
    analysed step, per evaluated split: coordinates + ``step, split, corrupted, component, layer, readout, position, attrib,
    attrib_example_median, gap, p_clean, p_corrupted, p_patched, n, kept, min_gap, selected``.

    ``kept`` is the paper's run filter (the corruption lowered the mean answer probability by more
    than ``min_gap``); ``selected`` the best-learning-rate flag (the mechanism figures draw every
    kept run, the accuracy figures the selected ones). ``failed`` runs are left out."""
    from tinylang.evaluation.attribution import READOUTS, attributions, readout_subset

    last = readout_subset(_last_analysed(interventions, failed))
    if last.empty:
        table = runs.merge(pd.DataFrame(columns=MECHANISM_COLUMNS), on="run")
        return table.assign(selected=pd.Series(dtype=bool))
    min_gap = _min_gap(min_gap)
    attrib = attributions(last, min_gap).assign(min_gap=min_gap)
    attrib = attrib[attrib["position"].isin(list(READOUTS.values()))]
    readout = {position: name for name, position in READOUTS.items()}
    attrib = attrib.assign(readout=attrib["position"].map(readout))
    table = runs.merge(attrib[[c for c in MECHANISM_COLUMNS if c in attrib]], on="run")
    table["selected"] = table["run"].isin(set(selected))
    return table


def dropped_runs_table(interventions: pd.DataFrame, runs: pd.DataFrame, failed: Mapping[str, Any] | Iterable[str] = (),
                       min_gap: float | None = None) -> pd.DataFrame:
    """The runs the mechanism figures leave out, and why: one row per run (and per split the
    filter drops it on) with coordinates + ``step`` (its last analysed step; <NA> for failed
    runs), ``split``, ``corrupted`` (the headline corrupted item), ``p_clean, p_corrupted, gap``
    (means over the examples), ``min_gap`` and ``reason``: ``"gap <= min_gap"`` (the corruption
    hardly lowered the answer's probability: nothing to restore), ``"failed: <failure>"``
    (training stopped at a NaN/infinite loss) or ``"no intervention results with
    query_item_orig corrupted"``."""
    from tinylang.evaluation.attribution import HEADLINE_CORRUPTED, reference_gaps

    failures = dict(failed) if isinstance(failed, Mapping) else dict.fromkeys(failed)
    last = _last_analysed(interventions, failures)
    min_gap = _min_gap(min_gap)
    gaps = reference_gaps(last, min_gap) if len(last) else pd.DataFrame(columns=["run", "step", "corrupted", "kept"])
    gaps = gaps[gaps["corrupted"] == HEADLINE_CORRUPTED]
    rows = []
    for run in runs["run"]:
        at = gaps[gaps["run"] == run]
        if run in failures:
            reason = f"failed: {failures[run]}" if failures[run] else "failed"
            rows.append({"run": run, "step": pd.NA, "reason": reason})
        elif at.empty:
            rows.append({"run": run, "step": pd.NA, "reason": f"no intervention results with {HEADLINE_CORRUPTED} corrupted"})
        for _, row in at[~at["kept"].astype(bool)].iterrows():
            rows.append({"run": run, "step": row["step"], "split": row.get("split"), "p_clean": row["p_clean"],
                         "p_corrupted": row["p_corrupted"], "gap": row["gap"], "reason": "gap <= min_gap"})
    columns = ["run", "step", "split", "p_clean", "p_corrupted", "gap", "reason"]
    dropped = pd.DataFrame(rows, columns=columns).astype({"step": "Int64", "split": "object", "p_clean": "float64",
                                                          "p_corrupted": "float64", "gap": "float64"})
    dropped = dropped.assign(corrupted=HEADLINE_CORRUPTED, min_gap=float(min_gap))
    table = runs.merge(dropped, on="run")
    return table[[*runs.columns, "step", "split", "corrupted", "p_clean", "p_corrupted", "gap", "min_gap", "reason"]]


def curves_table(behaviour: pd.DataFrame, interventions: pd.DataFrame | None, runs: pd.DataFrame,
                 selected: Iterable[str], splits: Mapping[str, tuple[str, str]],
                 min_gap: float | None = None) -> pd.DataFrame:
    """Accuracy on the report split and the headline Attrib (ratio of means at the last layer's
    block_input, in-context key corrupted) at @Key/@Value/@Query over training, per run:
    coordinates + ``step, quantity, value, selected``. Attrib is NaN at the steps where the run
    filter drops the run (gap ``<= min_gap``: nothing to restore yet)."""
    from tinylang.evaluation import attribution as at

    report = runs.set_index("run")["language"].map(lambda lang: splits[lang][1])
    acc = behaviour[(behaviour["metric"] == "accuracy") & (behaviour["query_type"] == "ALL")]
    acc = acc[acc["split"] == acc["run"].map(report)]
    frames = [acc.assign(quantity="accuracy")[["run", "step", "quantity", "value"]]]
    if interventions is not None and len(interventions):
        needed = at.readout_subset(interventions, [at.HEADLINE_COMPONENT], [at.HEADLINE_CORRUPTED])
        if "split" in needed:
            needed = needed[needed["split"] == needed["run"].map(report)]
        headline = at.readout_rows(at.attributions(needed, _min_gap(min_gap)))
        value = headline["attrib"].where(headline["kept"].astype(bool))
        frames.append(headline.assign(quantity="attrib" + headline["readout"], value=value)[
            ["run", "step", "quantity", "value"]])
    table = runs.merge(pd.concat(frames, ignore_index=True), on="run")
    table["selected"] = table["run"].isin(set(selected))
    return table.sort_values(["run", "quantity", "step"], ignore_index=True)


def build_study_tables(coords: Iterable[Mapping[str, object]], language_splits: Mapping[str, Iterable[str]],
                       behaviour_paths: Iterable[PathLike], intervention_paths: Iterable[PathLike] = (),
                       statuses: Iterable[Mapping[str, Any] | PathLike] | None = None,
                       min_gap: float | None = None) -> dict[str, pd.DataFrame]:
    """Every aggregate table of a study: ``runs``, ``run_accuracy``, ``selection``, ``curves``
    and (with intervention tables) ``mechanism`` and ``dropped_runs``. ``statuses``: every run's
    status file (or status dict) from the train stage; None: every run finished. ``min_gap``: the
    mechanism run filter's threshold (None: ``tinylang.evaluation.attribution.MIN_GAP``, 0.01)."""
    runs = run_table(coords)
    status = None if statuses is None else run_statuses(statuses)
    listed = with_status(runs, status)
    failed = set(listed.loc[listed["status"] == "failed", "run"])
    splits = selection_splits(language_splits)
    behaviour = concat_tables(behaviour_paths)
    accuracy = final_accuracy(behaviour, runs, failed=failed, language_splits=language_splits)
    selection, run_accuracy = select_best(accuracy, splits, failed)
    selected = run_accuracy.loc[run_accuracy["selected"], "run"].unique()
    intervention_paths = list(intervention_paths)
    interventions = concat_tables(intervention_paths) if intervention_paths else None
    tables = {"runs": listed, "run_accuracy": run_accuracy, "selection": selection,
              "curves": curves_table(behaviour, interventions, runs, selected, splits, min_gap)}
    if interventions is not None:
        tables["mechanism"] = mechanism_table(interventions, runs, selected, failed, min_gap)
        failures = dict(zip(listed["run"], listed["failure"]))
        tables["dropped_runs"] = dropped_runs_table(interventions, runs, {r: failures[r] for r in failed}, min_gap)
    return tables


__all__ = ["build_study_tables", "configuration_columns", "curves_table", "dropped_runs_table", "final_accuracy",
           "mechanism_table", "run_statuses", "run_table", "select_best", "seed_interval", "selection_splits", "with_status"]
