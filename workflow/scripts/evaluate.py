"""Snakemake script of rule `evaluate`."""

from tinylang.device import gpu_slot
from tinylang.pipeline import evaluate, set_threads, stage_logging

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]), gpu_slot(sm.params.device):
    set_threads(sm.threads)
    evaluate(
        sm.input.checkpoints,
        sm.wildcards.step,
        sm.input.language,
        sm.wildcards.evaluator,
        sm.params.options,
        sm.output[0],
        device=sm.params.device,
        run=sm.wildcards.run,
        status=sm.input.status,
    )
