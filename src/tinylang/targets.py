"""A study's files: where each language, run, evaluation table and figure goes under the
study's results folder, and the list of everything a full run of the study produces. The
workflow's rules and its default target read these; tests check them without Snakemake."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tinylang.figures.registry import BY_PREFIX
from tinylang.study.runs import COORDINATES

if TYPE_CHECKING:
    from tinylang.config import StudyConfig

# Figures with a line or box per run show the study's named runs; a study of swept runs only
# shows them all when there are few (larger sweeps are read through the study figures).
MAX_RUNS_PER_FIGURE = 16
STUDY_TABLES = ("runs", "run_accuracy", "selection", "curves")
MECHANISM_TABLES = ("mechanism", "dropped_runs")


class StudyTargets:
    """The paths of ``study``'s outputs under ``out`` (``results/<study>``)."""

    def __init__(self, study: StudyConfig, out: str):
        self.study, self.out = study, out

    def language_dir(self, name: str) -> str:
        return f"{self.out}/languages/{name}"

    def run_dir(self, run: str) -> str:
        return f"{self.out}/runs/{run}"

    def eval_dir(self, run: str, step: int | str) -> str:
        """The folder of one checkpoint's evaluation tables, the output of one evaluate job."""
        return f"{self.run_dir(run)}/eval/step{step}"

    def eval_cache(self, run: str, step: int | str) -> str:
        """Where the evaluate job keeps each table it computed (``tinylang.stages.evaluate``)."""
        return f"{self.run_dir(run)}/eval_cache/step{step}"

    def eval_dirs(self, run: str, evaluator: str) -> list[str]:
        """The folder of every checkpoint ``evaluator`` analyses for ``run`` (none if it does not apply)."""
        if evaluator not in self.study.evaluators_for(run):
            return []
        return [self.eval_dir(run, step) for step in self.study.eval_steps(run, evaluator)]

    def all_eval_dirs(self, evaluator: str, runs: list[str] | None = None) -> list[str]:
        return [d for run in (self.study.run_names if runs is None else runs) for d in self.eval_dirs(run, evaluator)]

    @cached_property
    def figure_runs(self) -> list[str]:
        """The runs the per-run figures draw: the named runs, else every run of a small sweep."""
        names = self.study.run_names
        return list(self.study.runs) or (names if len(names) <= MAX_RUNS_PER_FIGURE else [])

    def study_tables(self) -> dict[str, str]:
        """Study table name → path; the mechanism tables need the interventions evaluator."""
        names = [*STUDY_TABLES, *(MECHANISM_TABLES if "interventions" in self.study.evaluators else ())]
        return {name: f"{self.out}/study/{name}.parquet" for name in names}

    @property
    def summary_page(self) -> str:
        """The report's landing page: the workflow description and the study's summary (RST)."""
        return f"{self.out}/report/summary.rst"

    def intervention_splits(self) -> set[str]:
        """Every split the interventions evaluator reads in some language of the study."""
        chosen = self.study.evaluator_options("interventions").splits
        return {split for language in self.study.languages.values() for split in (chosen or language.splits)
                if split in language.splits}

    def study_figures(self) -> list[str]:
        """The study figures this study can draw: mechanism figures need interventions, the
        generalisation figure a language with a dev split, ``mechanism_by_<axis>`` an extra sweep
        axis, several layers, or interventions on several splits."""
        study = self.study
        if "behaviour" not in study.evaluators:
            return []
        names = ["accuracy_vs_width", "study_training_curves"]
        if any("dev" in language.splits for language in study.languages.values()):
            names.append("generalisation")
        if "interventions" not in study.evaluators:
            return names
        names += ["mechanism_scatter", "mechanism_boxes", "mechanism_layers"]
        if any(study.run(run).model.n_layers > 1 for run in study.run_names):
            names.append(f"{BY_PREFIX}layer")
        extra = {axis for run in study.run_names for axis in study.run(run).coords() if axis not in COORDINATES}
        names += [f"{BY_PREFIX}{axis}" for axis in sorted(extra)]
        if len(self.intervention_splits()) > 1:
            names.append(f"{BY_PREFIX}split")
        return names

    def run_figures(self) -> list[str]:
        """The per-run figures: language statistics always; curves, accuracy and attribution of
        the ``figure_runs``; an intervention heatmap per named run."""
        evaluators, out = self.study.evaluators, self.out
        figures = [f"{out}/figures/language_stats.png"]
        if self.figure_runs:
            figures.append(f"{out}/figures/training_curves.png")
            figures += [f"{out}/figures/accuracy.png"] if "behaviour" in evaluators else []
            figures += [f"{out}/figures/attribution.png"] if "interventions" in evaluators else []
        if "interventions" in evaluators:
            figures += [f"{out}/figures/interventions_{run}.png" for run in self.study.runs]
        return figures

    def all_outputs(self) -> list[str]:
        """Everything a full run of the study writes that nothing else consumes (the default target)."""
        outputs = self.run_figures()
        if "behaviour" in self.study.evaluators:
            outputs += [*self.study_tables().values(), self.summary_page]
        outputs += [f"{self.out}/figures/study/{name}.png" for name in self.study_figures()]
        folders = {d: None for evaluator in self.study.evaluators for d in self.all_eval_dirs(evaluator)}
        return outputs + list(folders)


def eval_table(eval_dir: str | os.PathLike, evaluator: str) -> Path:
    """Evaluator ``evaluator``'s table in a checkpoint's evaluation folder."""
    return Path(eval_dir) / f"{evaluator}.parquet"


__all__ = ["MAX_RUNS_PER_FIGURE", "StudyTargets", "eval_table"]
