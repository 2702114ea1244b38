"""Figures: each built from a tidy table that is saved beside it."""

from .plots import accuracy, intervention_heatmap, language_stats, training_curves

__all__ = ["accuracy", "intervention_heatmap", "language_stats", "training_curves"]
