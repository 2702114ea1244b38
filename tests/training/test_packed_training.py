"""Packed training: K runs of different learning rates and seeds trained together equal the
same runs trained one by one (losses, final checkpoints, evaluation tables), for every mixer;
one run's divergence fails only that run; runs that differ in more than lr and seed are refused."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tinylang.evaluation import evaluate_behaviour
from tinylang.languages import load_tensors, parse_language_config, write_language
from tinylang.models import MIXERS, ModelConfig, load_checkpoint
from tinylang.training import TrainConfig, train_run
from tinylang.training.packed import PackedRun, pack_key, train_pack

# Learning rates where every mixer's training is tame: at 1e-2 DeltaNet's amplifies rounding so
# much that torch's own fused and unfused AdamW part by 30 % within 40 steps.
POINTS = [(1e-3, 0), (2e-3, 1), (5e-4, 2), (1.5e-3, 3)]  # (lr, seed) of the K = 4 runs
STEPS = 50
MIXERS_BUILT_IN = [name for name in MIXERS.names() if ":" not in name]


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    path = tmp_path_factory.mktemp("packed") / "ar"
    write_language(parse_language_config({"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 4, "seed": 0,
                                          "splits": {"train": 96, "test": 16}}), path)
    return path


def runs_of(mixer: str, out, **train) -> list[PackedRun]:
    model = ModelConfig(mixer=mixer, d_model=16, n_layers=1)
    return [PackedRun(f"lr{lr:g}-s{seed}", model,
                      TrainConfig(**{"lr": lr, "seed": seed, "steps": STEPS, "batch_size": 8, "log_every": 1,
                                     "warmup_steps": 5, "state_every": None, **train}), out / f"lr{lr:g}-s{seed}")
            for lr, seed in POINTS]


def behaviour(checkpoint, language) -> pd.DataFrame:
    model, _ = load_checkpoint(checkpoint)
    return evaluate_behaviour(model.eval(), {"test": load_tensors(language, "test")})


@pytest.mark.parametrize("mixer", MIXERS_BUILT_IN)
def test_packed_runs_equal_the_same_runs_trained_one_by_one(mixer, language, tmp_path):
    packed = runs_of(mixer, tmp_path / "packed")
    assert train_pack(packed, language, "cpu", progress=False) == {run.name: None for run in packed}
    for run in runs_of(mixer, tmp_path / "alone"):
        train_run(run.model, run.train, language, run.out_dir, "cpu", run.name, progress=False)
    losses = []
    for run in packed:
        alone = tmp_path / "alone" / run.name
        together, apart = (pd.read_parquet(d / "train_log.parquet") for d in (run.out_dir, alone))
        assert together["step"].tolist() == apart["step"].tolist() == list(range(1, STEPS + 1))
        pd.testing.assert_series_equal(together["loss"], apart["loss"], rtol=1e-5, atol=0)
        pd.testing.assert_series_equal(together["lr"], apart["lr"], rtol=1e-12)
        losses.append(together["loss"].iloc[-1])
        for step in (0, STEPS):
            mine, theirs = (torch.load(d / "checkpoints" / f"step{step}.pt", weights_only=False) for d in (run.out_dir, alone))
            assert mine["model_config"] == theirs["model_config"] and mine["extra"] == theirs["extra"]
            for name, tensor in theirs["state_dict"].items():
                torch.testing.assert_close(mine["state_dict"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
        final = f"step{STEPS}.pt"
        pd.testing.assert_frame_equal(behaviour(run.out_dir / "checkpoints" / final, language),
                                      behaviour(alone / "checkpoints" / final, language), rtol=1e-4)
    assert len(set(losses)) == len(POINTS)  # four different runs, not one repeated


def test_a_diverging_run_fails_alone(language, tmp_path):
    runs = runs_of("attention", tmp_path, grad_clip=None)
    runs[1] = PackedRun(runs[1].name, runs[1].model, runs[1].train.model_copy(update={"lr": 1e6}), runs[1].out_dir)
    faults = train_pack(runs, language, "cpu", progress=False)
    failed = faults.pop(runs[1].name)
    assert failed is not None and failed.reason.startswith(("loss is", "weights are")) and failed.step < STEPS
    assert faults == {run.name: None for run in runs if run is not runs[1]}
    assert sorted(p.name for p in (runs[1].out_dir / "checkpoints").iterdir()) == \
        [f"step{s}.pt" for s in failed.checkpoints]
    assert (pd.read_parquet(runs[1].out_dir / "train_log.parquet")["step"] < failed.step).all()
    for run in (runs[0], *runs[2:]):
        assert (run.out_dir / "checkpoints" / f"step{STEPS}.pt").is_file()
    alone = tmp_path / "alone"  # the pack went on without the failed run, to the same result
    train_run(runs[2].model, runs[2].train, language, alone, "cpu", runs[2].name, progress=False)
    pd.testing.assert_series_equal(pd.read_parquet(runs[2].out_dir / "train_log.parquet")["loss"],
                                   pd.read_parquet(alone / "train_log.parquet")["loss"], rtol=1e-5, atol=0)


def test_runs_that_differ_in_more_than_lr_and_seed_do_not_pack(language, tmp_path):
    runs = runs_of("attention", tmp_path)
    other = runs[0].train.model_copy(update={"batch_size": 4})
    assert pack_key(runs[0].model, runs[0].train) == pack_key(runs[1].model, runs[1].train)
    assert pack_key(runs[0].model, runs[0].train) != pack_key(runs[0].model, other)
    with pytest.raises(ValueError, match="differ in more than lr, seed"):
        train_pack([runs[0], PackedRun("other", runs[0].model, other, tmp_path / "other")], language, "cpu")
    assert not (tmp_path / "other").exists() and not runs[0].out_dir.exists()


def test_a_mixer_without_a_vmap_rule_trains_one_by_one_and_says_so(language, tmp_path, caplog):
    runs = runs_of("lstm", tmp_path)[:2]
    with caplog.at_level("INFO", logger="tinylang.training"):
        assert train_pack(runs, language, "cpu", progress=False) == {run.name: None for run in runs}
    assert any("train one by one: mixer 'lstm' cannot run under torch.func.vmap" in r.getMessage() for r in caplog.records)
    for run in runs:
        assert pd.read_parquet(run.out_dir / "train_log.parquet")["step"].tolist() == list(range(1, STEPS + 1))


class Interrupted(Exception):
    """Stands in for a killed job."""


def test_an_interrupted_pack_resumes_to_the_uninterrupted_result(language, tmp_path, caplog):
    def stop_at_step_30(row):
        if row["step"] == 30:
            raise Interrupted

    runs = runs_of("mamba", tmp_path / "packed", state_every=20)
    interrupted = [PackedRun(run.name, run.model, run.train, run.out_dir, stop_at_step_30) for run in runs]
    with pytest.raises(Interrupted):
        train_pack(interrupted, language, "cpu", progress=False)
    assert all((run.out_dir / "train_state.pt").is_file() for run in runs)  # the states of step 20
    with caplog.at_level("INFO", logger="tinylang.training"):
        assert train_pack(runs, language, "cpu", progress=False) == {run.name: None for run in runs}
    resumed_runs = {r.getMessage().split(":")[0] for r in caplog.records if "resuming from step 20 of 50" in r.getMessage()}
    assert resumed_runs == {f"run {run.name}" for run in runs}
    for run in runs_of("mamba", tmp_path / "alone", state_every=20):
        train_run(run.model, run.train, language, run.out_dir, "cpu", run.name, progress=False)
        resumed = pd.read_parquet(tmp_path / "packed" / run.name / "train_log.parquet")
        pd.testing.assert_series_equal(resumed["loss"], pd.read_parquet(run.out_dir / "train_log.parquet")["loss"],
                                       rtol=1e-5, atol=0)
