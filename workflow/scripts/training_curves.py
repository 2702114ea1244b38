"""Snakemake script of rule `training_curves`."""

from tinylang.figures import training_curves
from tinylang.pipeline import stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    training_curves(dict(zip(sm.params.runs, sm.input.logs)), sm.output.table, [sm.output.png, sm.output.pdf])
