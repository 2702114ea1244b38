"""Snakemake script of rule `attribution`."""

from tinylang.figures import attribution
from tinylang.pipeline import stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    attribution(sm.input.tables, sm.output.table, [sm.output.png, sm.output.pdf])
