"""Snakemake script of rule `language`."""

from tinylang.pipeline import generate_language, stage_logging

with stage_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected)
    generate_language(snakemake.params.config, snakemake.output[0])  # noqa: F821
