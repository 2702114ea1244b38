"""Snakemake script of rule `study_figure`."""

from tinylang.stages import StudyFigureSpec, draw_study_figure

draw_study_figure(StudyFigureSpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
