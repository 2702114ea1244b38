"""Snakemake script of the run-figure rules (training_curves, accuracy, attribution,
intervention_heatmap, language_stats): the rule's name is the figure's."""

from tinylang.stages import FigureSpec, draw_figure

draw_figure(FigureSpec.from_job(snakemake, snakemake.rule))  # noqa: F821 (snakemake is injected)
