"""A study whose mixer, language and evaluator live in a module outside tinylang
(tests/fixtures/my_extension.py, the README's worked example), run end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_snakemake

pytestmark = pytest.mark.slow

EXTENSION = Path(__file__).parents[1] / "fixtures" / "my_extension.py"
STUDY = {
    "study": "ext",
    "device": "cpu",
    "threads": 1,
    "languages": {"first": {"type": "my_extension:FirstToken", "splits": {"train": 256, "test": 32}}},
    "models": {"mean": {"mixer": "my_extension:CausalMean", "d_model": 16, "n_layers": 1,
                        "mixer_args": {"gate": False}}},
    "training": {"lr": 0.003, "batch_size": 16, "steps": 12, "checkpoints": [6], "seed": 0},
    "runs": {"mean": {"language": "first", "model": "mean"}},
    "evaluators": {"behaviour": {"checkpoints": "final", "num_examples": 32},
                   "my_extension:AnswerRank": {"num_examples": 32}},
}


def test_a_mixer_language_and_evaluator_from_outside_the_package_run_a_whole_study(tmp_path):
    shutil.copy(EXTENSION, tmp_path)  # beside the study file, where Snakemake runs: found there
    out = Path("results") / "ext"
    final = out / "runs" / "mean" / "eval" / "step12"  # a checkpoint's folder: all its evaluators' tables
    ranks = final / "my_extension:AnswerRank.parquet"
    # (the other figures are the shared study's tests)
    run_snakemake(tmp_path, STUDY, "study_tables", str(final), str(out / "figures" / "accuracy.png"))
    out = tmp_path / out
    runs = pd.read_parquet(out / "study" / "runs.parquet")
    assert runs[["run", "language", "mixer", "status"]].values.tolist() == [
        ["mean", "first", "my_extension:CausalMean", "ok"]]
    ranks = pd.read_parquet(tmp_path / ranks)
    assert ranks[["run", "step", "split", "metric"]].values.tolist() == [
        ["mean", 12, "test", "mean_rank"], ["mean", 12, "test", "top1"]]
    assert 0 <= ranks.value.min() and ranks.value.max() < 8  # a rank among 8 symbols + 4 other tokens
    behaviour = pd.read_parquet(out / "runs" / "mean" / "eval" / "step12" / "behaviour.parquet")
    assert set(behaviour.query_type) >= {"first"}
    assert (out / "figures" / "accuracy.png").stat().st_size > 0


def test_a_path_that_does_not_import_stops_snakemake_before_any_job(tmp_path):
    study = {**STUDY, "models": {"mean": {**STUDY["models"]["mean"], "mixer": "my_extension:CausalMean"}}}
    proc = run_snakemake(tmp_path, study, check=False)  # the module is not beside the study
    assert proc.returncode != 0
    assert "cannot import module 'my_extension'" in proc.stderr
    assert not (tmp_path / "results").exists()
