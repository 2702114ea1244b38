"""Figures: each built from a tidy table that is saved beside it."""

from .plots import accuracy, intervention_heatmap, training_curves

__all__ = ["accuracy", "intervention_heatmap", "training_curves"]
