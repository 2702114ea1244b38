"""A tiny sweep end to end: best-learning-rate selection and seed intervals recomputed by hand
from the per-run tables, and what adding a learning rate re-plans. (The mechanism table's
wiring of every run is the shared study's test: interventions here would add only pyvene's
start-up to each run.)"""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
from scipy import stats
from test_workflow import planned, snakemake

pytestmark = pytest.mark.slow

SWEEP_STUDY = {
    "study": "sweep",
    "device": "cpu",
    "threads": 1,
    "languages": {"ar": {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "train_test_split": 0.2,
                         "splits": {"train": 256, "dev": 32, "test": 32}}},
    "training": {"batch_size": 16, "steps": 12, "seed": 0},
    "pack": {"max_runs": 4},  # the four runs train in one job (tinylang.training.packed)
    "sweep": {
        "model": {"d_model": 16, "n_layers": 1, "pos_embed": False},
        "grid": {"language": ["ar"], "mixer": ["attention"], "lr": [0.003, 0.03], "seed": [0, 1]},
        "per_mixer": {"attention": {"pos_embed": True}},
    },
    "evaluators": {"behaviour": {"checkpoints": "final", "num_examples": 32}},
}


TABLES = "study_tables"  # the aggregation and every job it needs; the figures are the shared study's tests


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    snakemake(workdir, SWEEP_STUDY, TABLES)
    return workdir


def test_selection_and_intervals_match_a_hand_computation(finished_sweep):
    out = finished_sweep / "results" / "sweep"
    accuracy = {}  # (mixer, lr, seed, split) -> accuracy, read straight from each run's table
    for mixer in ("attention",):
        for lr in (0.003, 0.03):
            for seed in (0, 1):
                table = pd.read_parquet(out / "runs" / f"ar-{mixer}-lr{lr:g}-s{seed}" / "eval" / "step12" / "behaviour.parquet")
                for split in ("dev", "test"):
                    row = table[(table.split == split) & (table.metric == "accuracy") & (table.query_type == "ALL")]
                    accuracy[mixer, lr, seed, split] = float(row.value.item())

    selection = pd.read_parquet(out / "study" / "selection.parquet").set_index("mixer")
    assert len(selection) == 1
    for mixer in ("attention",):
        dev_means = {lr: (accuracy[mixer, lr, 0, "dev"] + accuracy[mixer, lr, 1, "dev"]) / 2 for lr in (0.003, 0.03)}
        best = 0.003 if dev_means[0.003] >= dev_means[0.03] else 0.03  # ties go to the smaller rate
        test = [accuracy[mixer, best, seed, "test"] for seed in (0, 1)]
        mean = sum(test) / 2
        half = stats.t.ppf(0.975, 1) * math.sqrt(((test[0] - mean) ** 2 + (test[1] - mean) ** 2) / 1) / math.sqrt(2)
        row = selection.loc[mixer]
        assert row.lr == best and row.select_split == "dev" and row.report_split == "test"
        assert row["mean"] == pytest.approx(mean) and row.n_seeds == 2
        assert row.ci_low == pytest.approx(mean - half) and row.ci_high == pytest.approx(mean + half)

    runs = pd.read_parquet(out / "study" / "runs.parquet")
    assert len(runs) == 4 and set(runs.columns) >= {"run", "mixer", "lr", "seed", "d_model", "pos_embed"}
    assert runs.set_index("run").loc["ar-attention-lr0.003-s0", "pos_embed"]  # the per-mixer override


def test_adding_a_learning_rate_replans_only_the_new_runs_and_the_aggregation(finished_sweep):
    assert planned(finished_sweep, SWEEP_STUDY, TABLES) == set()
    study = copy.deepcopy(SWEEP_STUDY)
    study["sweep"]["grid"]["lr"].append(0.01)
    jobs = planned(finished_sweep, study, TABLES)
    new_runs = {f"ar-attention-lr0.01-s{seed}" for seed in (0, 1)}
    per_run = {(rule, run) for rule, run in jobs if run}
    assert per_run == {(rule, run) for run in new_runs  # a pack of the two new runs; the old pack stays
                       for rule in ("train_pack-ar-attention-lr0.01-s0", "evaluate/step12")}
    assert {rule for rule, run in jobs if not run} == {"study_tables"}


def test_the_sweep_trained_as_one_pack_and_a_pack_retrains_when_its_runs_change(finished_sweep):
    log = (finished_sweep / "results" / "sweep" / "logs" / "train" / "pack-ar-attention-lr0.003-s0.log").read_text()
    assert "4 runs train as one pack" in log
    study = copy.deepcopy(SWEEP_STUDY)
    study["sweep"]["grid"]["seed"].append(2)  # the packs become (lr 0.003: s0-s2, lr 0.03: s0), (lr 0.03: s1, s2)
    trained = {(rule, run) for rule, run in planned(finished_sweep, study, TABLES) if rule.startswith("train")}
    assert trained == {("train_pack-ar-attention-lr0.003-s0", f"ar-attention-lr0.003-s{s}") for s in (0, 1, 2)} | {
        ("train_pack-ar-attention-lr0.003-s0", "ar-attention-lr0.03-s0"),
        ("train_pack-ar-attention-lr0.03-s1", "ar-attention-lr0.03-s1"),
        ("train_pack-ar-attention-lr0.03-s1", "ar-attention-lr0.03-s2")}

