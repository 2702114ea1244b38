"""Snakemake script of rule `study_tables`."""

from tinylang.pipeline import aggregate_study, stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    aggregate_study(sm.params.coords, sm.params.splits, sm.input.behaviour, sm.input.interventions,
                    dict(sm.output.items()), status_files=sm.input.status)
