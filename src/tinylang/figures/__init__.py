"""Figures: each built from a tidy table that is saved beside it."""

from .plots import accuracy, attribution, intervention_heatmap, language_stats, training_curves

__all__ = ["accuracy", "attribution", "intervention_heatmap", "language_stats", "training_curves"]
