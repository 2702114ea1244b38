"""Snakemake script of rule `train`."""

from tinylang.device import gpu_slot
from tinylang.pipeline import set_threads, stage_logging, train

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]), gpu_slot(sm.params.device):
    set_threads(sm.threads)
    train(
        sm.params.model,
        sm.params.train,
        sm.input.language,
        sm.output.checkpoints,
        sm.output.log,
        device=sm.params.device,
        run=sm.wildcards.run,
        status=sm.output.status,
    )
