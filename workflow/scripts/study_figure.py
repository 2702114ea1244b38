"""Snakemake script of rule `study_figure`."""

from tinylang.pipeline import stage_logging, study_figure

sm = snakemake  # noqa: F821 (snakemake is injected)
with stage_logging(sm.log[0]):
    study_figure(sm.wildcards.figure, sm.input.table, sm.output.table, [sm.output.png, sm.output.pdf],
                 study=sm.params.study, reference_csv=sm.input.reference)
