"""Snakemake script of the pack rules (`train_pack-<run>`)."""

from tinylang.stages import TrainPackSpec, train_pack

train_pack(TrainPackSpec.from_job(snakemake))  # noqa: F821 (snakemake is injected)
