"""Snakemake script of rule `study_summary`."""

from tinylang.stages import StudySummarySpec, study_summary

study_summary(StudySummarySpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
