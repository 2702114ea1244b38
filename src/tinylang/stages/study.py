"""The stages that read many runs: the per-run figures of a study, its aggregate tables and
its study figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tinylang.stages.context import stage_context
from tinylang.stages.job import Job, figure_outputs, log_file, study_of, tracking_of
from tinylang.tables import read_table, write_table
from tinylang.targets import eval_table

if TYPE_CHECKING:
    from tinylang.figures import Plot

log = logging.getLogger("tinylang")


@dataclass(frozen=True)
class FigureSpec:
    """A figure drawn from per-run files: ``inputs`` (paths, or name → path for the figures
    that label their inputs), saved as ``table_out`` and ``figure_outs``."""

    figure: str
    inputs: list[Path] | dict[str, Path]
    table_out: Path
    figure_outs: list[Path]
    log: Path | None = None

    def __post_init__(self) -> None:
        from tinylang.figures.registry import RUN_FIGURES

        if self.figure not in RUN_FIGURES:
            raise ValueError(f"unknown figure {self.figure!r}; allowed: {', '.join(RUN_FIGURES)}")
        if RUN_FIGURES.get(self.figure).keyed and not isinstance(self.inputs, dict):
            raise ValueError(f"figure {self.figure!r} labels its inputs: give them as name → path (params.names)")

    @classmethod
    def from_job(cls, job: Job, figure: str) -> FigureSpec:
        from tinylang.figures.registry import RUN_FIGURES

        evaluator = RUN_FIGURES.get(figure).evaluator
        paths = [Path(p) for p in job.input]  # a figure rule has one group of inputs
        if evaluator is not None:
            paths = [eval_table(folder, evaluator) for folder in paths]
        names = getattr(job.params, "names", None)
        inputs = dict(zip(names, paths, strict=True)) if names is not None else paths
        return cls(figure, inputs, *figure_outputs(job), log=log_file(job))


def _save_plot(plot: Plot, table_out: Path, figure_outs: list[Path]) -> pd.DataFrame:
    """Write ``plot``'s table to ``table_out`` and its figure to each of ``figure_outs``;
    returns the table written."""
    table = plot.table.reset_index(drop=True)
    write_table(table, table_out)
    for path in figure_outs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        plot.figure.savefig(path, bbox_inches="tight", dpi=150)
    return table


def draw_figure(spec: FigureSpec) -> pd.DataFrame:
    """Draw ``spec.figure`` and save it with the table it shows; returns that table."""
    from tinylang.figures.registry import RUN_FIGURES

    figure = RUN_FIGURES.get(spec.figure)
    inputs = spec.inputs
    if not figure.keyed and isinstance(inputs, dict):
        inputs = list(inputs.values())
    with stage_context(spec.log):
        return _save_plot(figure.function()(inputs), spec.table_out, spec.figure_outs)


@dataclass(frozen=True)
class StudyTablesSpec:
    """The inputs of a study's aggregate tables: every run's coordinates, each language's
    splits, the behaviour and intervention tables, the runs' status files (None: every run
    finished) and the output path of each table."""

    coords: list[dict[str, Any]]
    language_splits: dict[str, list[str]]
    behaviour: list[Path]
    interventions: list[Path]
    outputs: dict[str, Path]
    status_files: list[Path] | None = None
    min_gap: float | None = None  # the mechanism run filter's threshold (None: the paper's 0.01)
    log: Path | None = None
    tracking: Any = None  # a tinylang.tracking.TrackingConfig: add each run's results to its record
    study: str = ""

    @classmethod
    def from_job(cls, job: Job) -> StudyTablesSpec:
        return cls(list(job.params.coords), dict(job.params.splits),
                   [eval_table(folder, "behaviour") for folder in job.input.behaviour],
                   [eval_table(folder, "interventions") for folder in job.input.interventions],
                   {k: Path(v) for k, v in job.output.items()},
                   [Path(p) for p in job.input.status], log=log_file(job), tracking=tracking_of(job),
                   study=study_of(job))

    @property
    def study_dir(self) -> Path:
        return self.outputs["runs"].parents[1]  # results/<study>/study/runs.parquet


def study_tables(spec: StudyTablesSpec) -> dict[str, pd.DataFrame]:
    """The study's tables (``runs``, ``run_accuracy``, ``selection``, ``curves``, ``mechanism``,
    ``dropped_runs``), each written to ``spec.outputs[name]``; failed runs are reported in
    ``runs`` and never selected."""
    from tinylang.study import build_study_tables
    from tinylang.training.status import read_run_status

    with stage_context(spec.log):
        statuses = None if spec.status_files is None else [read_run_status(p) for p in spec.status_files]
        failed = [s for s in statuses or [] if s["status"] == "failed"]
        for fault in failed:
            log.warning("run %s failed at step %s (learning rate %g: %s): reported with status 'failed', never "
                        "selected", fault["run"], fault.get("step"), fault.get("lr", float("nan")), fault.get("reason"))
        tables = build_study_tables(spec.coords, spec.language_splits, spec.behaviour, spec.interventions, statuses,
                                    spec.min_gap)
        missing = [name for name in spec.outputs if name not in tables]
        if missing:
            raise ValueError(f"no {', '.join(missing)} table: it needs intervention tables")
        for name, path in spec.outputs.items():
            write_table(tables[name], path)
        _log_summary(tables, len(failed))
        if spec.tracking is not None:
            from tinylang.tracking import log_study_results

            log_study_results(spec.tracking, spec.study, spec.study_dir, tables)
        return tables


def _log_summary(tables: Mapping[str, pd.DataFrame], n_failed: int) -> None:
    runs = len(tables["runs"])
    if "dropped_runs" in tables:
        dropped = tables["dropped_runs"]
        reasons = {reason: int(n) for reason, n in dropped["reason"].str.split(":").str[0].value_counts().items()}
        n_dropped = dropped["run"].nunique()
        log.info("mechanism figures: %d of %d runs kept on every split; dropped %d runs %s (listed in dropped_runs)",
                 runs - n_dropped, runs, n_dropped, reasons)
    log.info("aggregated %d runs (%d failed) into %d configurations", runs, n_failed, len(tables["selection"]))


@dataclass(frozen=True)
class StudySummarySpec:
    """The report's landing page: the study tables it summarises, the workflow description it
    starts with, and where the summary table and the page go."""

    runs: Path
    selection: Path
    curves: Path
    description: Path
    table_out: Path
    page_out: Path
    log: Path | None = None

    @classmethod
    def from_job(cls, job: Job) -> StudySummarySpec:
        return cls(Path(job.input.runs), Path(job.input.selection), Path(job.input.curves),
                   Path(job.input.description), Path(job.output.table), Path(job.output.page), log_file(job))


def study_summary(spec: StudySummarySpec) -> pd.DataFrame:
    """Write the summary table (``tinylang.study.summary``) and the landing page drawn from it."""
    from tinylang.figures.summary import summary_rst
    from tinylang.files import atomic_file
    from tinylang.study.summary import summary_table

    with stage_context(spec.log):
        runs = read_table(spec.runs)
        table = summary_table(runs, read_table(spec.selection), read_table(spec.curves))
        write_table(table, spec.table_out)
        with atomic_file(spec.page_out) as tmp:
            tmp.write_text(summary_rst(spec.description.read_text(), runs, table))
        return table


@dataclass(frozen=True)
class StudyFigureSpec:
    """A study figure (``tinylang.figures.registry``) drawn from study table ``table``; with
    ``paper_study``, figures that take a reference draw the paper's numbers of that study
    (from ``reference_csv``, default ``config/paper/reference.csv``) beside ours."""

    figure: str
    table: Path
    table_out: Path
    figure_outs: list[Path]
    paper_study: str | None = None
    reference_csv: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None

    def __post_init__(self) -> None:
        from tinylang.figures.registry import study_figure

        study_figure(self.figure)  # an unknown name is an error here, before any table is read

    @classmethod
    def from_job(cls, job: Job) -> StudyFigureSpec:
        return cls(job.wildcards.figure, Path(job.input.table), *figure_outputs(job), paper_study=job.params.study,
                   reference_csv=Path(job.input.reference), log=log_file(job))


def draw_study_figure(spec: StudyFigureSpec) -> pd.DataFrame:
    """Draw the study figure and save it with the table it shows; returns that table."""
    from tinylang.figures.registry import study_figure

    figure = study_figure(spec.figure)
    options = {**figure.options, **spec.options}
    with stage_context(spec.log):
        if spec.paper_study is not None and figure.takes_reference():
            from tinylang.figures.reference import REFERENCE_CSV, study_reference

            options.setdefault("reference", study_reference(spec.paper_study, path=spec.reference_csv or REFERENCE_CSV))
        plot = figure.function()(read_table(spec.table), **options)
        return _save_plot(plot, spec.table_out, spec.figure_outs)


__all__ = ["FigureSpec", "StudyFigureSpec", "StudyTablesSpec", "draw_figure", "draw_study_figure",
           "study_tables"]
