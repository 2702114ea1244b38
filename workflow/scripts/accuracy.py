"""Snakemake script of rule `accuracy`."""

from tinylang.figures import accuracy
from tinylang.pipeline import stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    accuracy(sm.input.tables, sm.output.table, [sm.output.png, sm.output.pdf])
