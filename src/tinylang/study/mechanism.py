"""The mechanism tables: the paper's Attrib at @Key/@Value/@Query for every run (flagged
``kept`` by the run filter), the runs the filter drops and why, and the training curves of
accuracy and the headline Attrib."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

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


__all__ = ["MECHANISM_COLUMNS", "curves_table", "dropped_runs_table", "mechanism_table"]
