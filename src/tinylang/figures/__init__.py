"""Figures: each drawing function returns a ``Plot``, the figure and the tidy table it draws,
and writes no file (the workflow's stages save both).

The plotting stack (matplotlib, seaborn, scipy) loads on first use of a drawing function, so
that planning a workflow, which reads ``tinylang.figures.registry``, does not pay for it."""

from importlib import import_module

__all__ = ["Plot", "accuracy", "attribution", "intervention_heatmap", "language_stats", "training_curves"]


def __getattr__(name: str):
    if name == "Plot":
        return import_module("._study_style", __name__).Plot
    if name in __all__:
        return getattr(import_module(".plots", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
