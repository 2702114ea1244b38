"""Snakemake script of rule `intervention_heatmap`."""

from tinylang.figures import intervention_heatmap
from tinylang.pipeline import stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    intervention_heatmap(sm.input.tables, sm.output.table, [sm.output.png, sm.output.pdf])
