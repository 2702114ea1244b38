"""The one door from the workflow into the core: one function per rule, each taking one typed
spec. A rule's script builds the spec from its job (``Spec.from_job(snakemake)``) and calls
the function; tests build specs directly. Nothing here imports Snakemake."""

from tinylang.stages.context import stage_context, stage_logging
from tinylang.stages.evaluate import EvaluateSpec, evaluate
from tinylang.stages.run import LanguageSpec, TrainPackSpec, TrainSpec, generate_language, train, train_pack
from tinylang.stages.study import (
    FigureSpec,
    StudyFigureSpec,
    StudySummarySpec,
    StudyTablesSpec,
    draw_figure,
    draw_study_figure,
    study_summary,
    study_tables,
)

__all__ = [
    "EvaluateSpec",
    "FigureSpec",
    "LanguageSpec",
    "StudyFigureSpec",
    "StudySummarySpec",
    "StudyTablesSpec",
    "TrainPackSpec",
    "TrainSpec",
    "draw_figure",
    "draw_study_figure",
    "evaluate",
    "generate_language",
    "stage_context",
    "stage_logging",
    "study_summary",
    "study_tables",
    "train",
    "train_pack",
]
