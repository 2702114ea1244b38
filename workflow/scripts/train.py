"""Snakemake script of rule `train`."""

from tinylang.stages import TrainSpec, train

train(TrainSpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
