"""A study's targets: the figures each study draws and the files a full run writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tinylang.config import load_study
from tinylang.targets import eval_table

ROOT = Path(__file__).resolve().parents[1]


def study(name):
    path = ROOT / "config" / ("config.yaml" if name == "default" else f"studies/{name}.yaml")
    return load_study(yaml.safe_load(path.read_text()), language_library=ROOT / "config" / "languages")


@pytest.mark.parametrize(("name", "expected", "absent"), [
    ("ar-cpu", {"accuracy_vs_width", "mechanism_boxes", "mechanism_layers", "mechanism_by_layer"},
     {"generalisation", "mechanism_by_split"}),
    ("atr-gen-cpu", {"generalisation", "mechanism_by_split", "mechanism_by_layer"}, set()),
    ("mamba-ablation-cpu", {"mechanism_by_mixer_args.d_conv"}, {"mechanism_by_split"}),
])
def test_each_study_draws_the_figures_its_runs_and_evaluators_allow(name, expected, absent):
    figures = set(study(name).targets("out").study_figures())
    assert expected <= figures and not absent & figures


def test_a_large_sweep_draws_no_per_run_figures_and_a_small_study_all():
    big, default = study("ar-cpu").targets("o"), study("default").targets("o")
    assert big.figure_runs == [] and "o/figures/training_curves.png" not in big.all_outputs()
    assert default.figure_runs == list(study("default").runs)
    assert {"o/figures/training_curves.png", "o/figures/accuracy.png"} <= set(default.all_outputs())


def test_all_outputs_hold_every_evaluation_table_and_study_table_once():
    config = study("atr-gen-cpu")
    targets = config.targets("o")
    outputs = targets.all_outputs()
    assert len(outputs) == len(set(outputs))
    run = config.run_names[0]
    steps = config.eval_steps(run, "interventions")
    assert [f"o/runs/{run}/eval/step{s}" for s in steps] == targets.eval_dirs(run, "interventions")
    assert set(targets.eval_dirs(run, "interventions")) <= set(outputs)  # each checkpoint's folder, once
    assert eval_table("o/runs/r/eval/step3", "probes") == Path("o/runs/r/eval/step3/probes.parquet")
    assert set(targets.study_tables().values()) <= set(outputs)
    assert "o/study/dropped_runs.parquet" in outputs and "o/figures/study/mechanism_by_split.png" in outputs
    assert targets.intervention_splits() == {"dev", "test"}


def test_an_evaluator_that_does_not_apply_has_no_tables():
    config = study("default")
    targets = config.targets("o")
    mamba = next(run for run in config.run_names if config.run(run).model.mixer == "mamba")
    assert "attention" in config.evaluators and targets.eval_dirs(mamba, "attention") == []  # attention only
    assert targets.eval_dirs(mamba, "behaviour")
    final = config.run(mamba).checkpoint_steps[-1]
    assert config.evaluators_at(mamba, final) == [name for name in config.evaluators if name != "attention"]
