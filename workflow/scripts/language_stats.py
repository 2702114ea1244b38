"""Snakemake script of rule `language_stats`."""

from tinylang.figures import language_stats
from tinylang.pipeline import stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    language_stats(dict(zip(sm.params.names, sm.input.languages)), sm.output.table, [sm.output.png, sm.output.pdf])
