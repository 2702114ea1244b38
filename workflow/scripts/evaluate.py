"""Snakemake script of rule `evaluate`."""

from tinylang.stages import EvaluateSpec, evaluate

evaluate(EvaluateSpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
