# tinylang: language generation → training → checkpoint evaluation → interventions → figures.
# Run the default study:  snakemake --cores all
# Another study:          snakemake --cores all --configfile my_study.yaml
import os
import sys

from snakemake.utils import min_version

import tinylang
from tinylang.config import ConfigError, load_study
from tinylang.device import wants_gpu
from tinylang.evaluation.evaluators import EVALUATORS
from tinylang.figures.registry import study_figure
from tinylang.environment import export_package_path

min_version("9.0")  # as pyproject.toml requires

# Jobs, also in the rules' conda environments (which don't install tinylang), run this code.
export_package_path()


# The default study, unless a study was given with --configfile (studies are self-contained:
# Snakemake would otherwise merge them key by key into the default one).
if "study" not in config:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


try:
    STUDY = load_study(config, language_library=os.path.join(workflow.basedir, "config", "languages"))
except ConfigError as err:
    sys.exit(f"tinylang: {err}")

OUT = f"results/{STUDY.study}"
# Rules that can use a GPU declare it, so `--resources gpu=N` schedules them.
GPU = 1 if wants_gpu(STUDY.device) else 0
VERSION = tinylang.__version__  # a param, so a new tinylang version re-runs what it computes


report: "workflow/report/workflow.rst"


wildcard_constraints:
    language=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    step=r"\d+",
    evaluator="|".join(EVALUATORS.names()),
    figure=r"[A-Za-z0-9_.]+",


# Cheap jobs that read a few tables: on a cluster they run in the submitting process, not as jobs.
localrules:
    all,
    language_stats,
    training_curves,
    accuracy,
    attribution,
    intervention_heatmap,
    study_tables,
    study_figure,


include: "workflow/rules/common.smk"
include: "workflow/rules/languages.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/study.smk"
include: "workflow/rules/study_figures.smk"


rule all:
    input:
        TARGETS.all_outputs(),
    default_target: True
