"""Snakemake script of rule `interventions`."""

from tinylang.device import gpu_slot
from tinylang.pipeline import intervene, set_threads, stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]), gpu_slot(sm.params.device):
    set_threads(sm.threads)
    intervene(
        sm.input.checkpoints,
        sm.wildcards.step,
        sm.input.language,
        sm.params.interventions,
        sm.output[0],
        device=sm.params.device,
        run=sm.wildcards.run,
    )
