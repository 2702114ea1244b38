"""Snakemake script of rule `study_tables`."""

from tinylang.stages import StudyTablesSpec, study_tables

study_tables(StudyTablesSpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
