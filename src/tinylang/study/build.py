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
is for the accuracy figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from tinylang.study.mechanism import curves_table, dropped_runs_table, mechanism_table
from tinylang.study.run_tables import PathLike, concat_tables
from tinylang.study.runs import run_statuses, run_table, with_status
from tinylang.study.selection import final_accuracy, select_best, selection_splits


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


__all__ = ["build_study_tables"]
