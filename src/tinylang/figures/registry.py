"""The figures, keyed by the names the workflow uses: the per-run figures (one rule each,
``RUN_FIGURES``) and the study figures (rule ``study_figure``, ``STUDY_FIGURES``): which
inputs or study table each is drawn from and which function draws it. ``mechanism_by_<column>`` names the
mechanism boxes split by a sweep axis, ``layer`` or ``split``. Register more from any module
(``STUDY_FIGURES.register("name")(StudyFigure(...))``); drawing functions load lazily, so
planning a workflow does not import the plotting stack."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tinylang.registry import Registry

StudyTable = Literal["runs", "run_accuracy", "selection", "curves", "mechanism", "dropped_runs"]
BY_PREFIX = "mechanism_by_"


def _load(draw: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(draw):
        return draw
    module, name = draw.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class RunFigure:
    """A figure drawn from per-run files by ``draw`` (a function, or ``"module:function"``),
    called as ``draw(inputs)``; it returns a ``tinylang.figures.Plot`` (the figure and its
    table), which ``tinylang.stages.draw_figure`` saves. ``keyed``: it takes its inputs as a
    mapping name → path (the runs or languages it labels), else as a list. ``evaluator``: its
    inputs are checkpoints' evaluation folders, of which it reads that evaluator's tables."""

    draw: str | Callable[..., Any]
    keyed: bool = False
    evaluator: str | None = None

    def function(self) -> Callable[..., Any]:
        return _load(self.draw)


RUN_FIGURES: Registry[RunFigure] = Registry("figure")
for _name, _keyed, _evaluator in (("training_curves", True, None), ("language_stats", True, None),
                                  ("accuracy", False, "behaviour"), ("attribution", False, "interventions"),
                                  ("intervention_heatmap", False, "interventions")):
    RUN_FIGURES.register(_name)(RunFigure(f"tinylang.figures.plots:{_name}", _keyed, _evaluator))


@dataclass(frozen=True)
class StudyFigure:
    """A study figure: drawn by ``draw`` (a function, or ``"module:function"``) from study
    table ``table``, with keyword ``options``; the function is called as
    ``draw(table, **options)`` and returns a ``tinylang.figures.Plot`` (the figure and the
    table it drew), which ``tinylang.stages.draw_study_figure`` saves."""

    table: StudyTable
    draw: str | Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)

    def function(self) -> Callable[..., Any]:
        return _load(self.draw)

    def takes_reference(self) -> bool:
        """Whether the figure draws the paper's numbers beside ours (a ``reference`` keyword)."""
        return "reference" in inspect.signature(self.function()).parameters


STUDY_FIGURES: Registry[StudyFigure] = Registry("study figure")
_PLOTS = "tinylang.figures.study_plots"
for _name, _table, _function in (
    ("accuracy_vs_width", "selection", "accuracy_vs_width"),
    ("mechanism_scatter", "mechanism", "mechanism_scatter"),
    ("mechanism_boxes", "mechanism", "mechanism_boxes"),
    ("mechanism_layers", "mechanism", "mechanism_layers"),
    ("study_training_curves", "curves", "training_curves"),
    ("generalisation", "run_accuracy", "generalisation"),
):
    STUDY_FIGURES.register(_name)(StudyFigure(_table, f"{_PLOTS}:{_function}"))


def study_figure(name: str) -> StudyFigure:
    """The registered figure ``name``, or for ``mechanism_by_<column>`` the mechanism boxes
    split by that column; a ValueError naming the allowed names otherwise."""
    if name.startswith(BY_PREFIX) and name not in STUDY_FIGURES:
        return StudyFigure("mechanism", f"{_PLOTS}:mechanism_boxes", {"by": name.removeprefix(BY_PREFIX)})
    try:
        return STUDY_FIGURES.get(name)
    except KeyError as err:
        raise ValueError(f"{err.args[0]}, or {BY_PREFIX}<column>") from None


__all__ = ["BY_PREFIX", "RUN_FIGURES", "STUDY_FIGURES", "RunFigure", "StudyFigure", "StudyTable", "study_figure"]
