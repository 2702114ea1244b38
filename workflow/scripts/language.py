"""Snakemake script of rule `language`."""

from tinylang.stages import LanguageSpec, generate_language

generate_language(LanguageSpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
