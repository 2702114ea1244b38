"""Resilience: a workflow killed mid-training resumes to the uninterrupted result, and a run whose
loss becomes NaN is a failed run (kept checkpoints, a status file, an empty table for the
checkpoints it never wrote, a failed row in the study's runs table), not a failed workflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import SNAKEFILE, snakemake_dag, write_study

LANGUAGE = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 256, "test": 32}}
MODEL = {"mixer": "attention", "d_model": 16, "n_layers": 1}
# Warmup makes step 1 a zero update (a kept checkpoint); then lr 1e6 without clipping diverges.
DIVERGING = {"lr": 1e6, "grad_clip": None, "warmup_steps": 5, "checkpoints": [1]}


def weights(path):
    from tinylang.models import load_checkpoint

    return load_checkpoint(path)[0].state_dict()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_loss_marks_the_run_failed_and_the_study_reports_it(tmp_path, caplog):
    """The stage functions the workflow calls: train → evaluate → aggregate, one run diverging."""
    import logging

    from tinylang.languages import parse_language_config
    from tinylang.models import ModelConfig
    from tinylang.stages import (
        EvaluateSpec,
        LanguageSpec,
        StudyTablesSpec,
        TrainSpec,
        evaluate,
        generate_language,
        study_tables,
        train,
    )
    from tinylang.training import TrainConfig

    language = tmp_path / "languages" / "ar"
    generate_language(LanguageSpec(parse_language_config(LANGUAGE), language))
    runs = tmp_path / "runs"
    base = {"batch_size": 16, "steps": 30, "checkpoints": [10], "seed": 0}
    configs = {"ok": base | {"lr": 3e-3}, "nan": base | DIVERGING}
    for run, config in configs.items():
        with caplog.at_level(logging.INFO, logger="tinylang"):
            status = train(TrainSpec(run, ModelConfig(**MODEL), TrainConfig(**config), language, runs / run / "checkpoints",
                                     runs / run / "train_log.parquet", runs / run / "status.json", device="cpu",
                                     progress=False))
        assert status["status"] == ("failed" if run == "nan" else "ok")
        assert not (runs / run / "partial").exists()

    fault = json.loads((runs / "nan" / "status.json").read_text())
    assert fault["status"] == "failed" and 2 < fault["step"] < 10 and fault["reason"] in ("loss is nan", "loss is inf")
    assert fault["checkpoints"] == [0, 1]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [e for e in errors if e.startswith(f"run nan: {fault['reason']} at step {fault['step']} "
                                                        f"(learning rate {fault['lr']:g}); training stopped")]
    assert len(errors) == 1
    assert sorted(p.name for p in (runs / "nan" / "checkpoints").iterdir()) == ["step0.pt", "step1.pt"]
    assert json.loads((runs / "ok" / "status.json").read_text()) == {"run": "ok", "status": "ok"}
    assert (pd.read_parquet(runs / "nan" / "train_log.parquet")["step"] < fault["step"]).all()

    options = {"checkpoints": "all", "num_examples": 32}
    tables = {}
    for run, step in (("ok", 10), ("ok", 30), ("nan", 1), ("nan", 10), ("nan", 30)):
        out = runs / run / "eval" / f"step{step}"
        evaluate(EvaluateSpec.build(run, step, {"behaviour": options}, runs / run / "checkpoints", language, out,
                                    status=runs / run / "status.json", device="cpu"))
        tables[run, step] = pd.read_parquet(out / "behaviour.parquet")
    assert len(tables["nan", 1]) and len(tables["ok", 30])
    for step in (10, 30):  # never written: empty, with the evaluator's columns and types
        assert tables["nan", step].empty
        assert tables["nan", step].dtypes.to_dict() == tables["ok", 30].dtypes.to_dict()
    with pytest.raises(Exception, match="step30.pt"):  # without a failed status a missing checkpoint is an error
        evaluate(EvaluateSpec.build("nan", 30, {"behaviour": options}, runs / "nan" / "checkpoints", language,
                                    tmp_path / "x", status=runs / "ok" / "status.json", device="cpu"))

    coords = [{"run": run, "language": "ar", "mixer": "attention", "d_model": 16, "n_layers": 1, "pos_embed": True,
               "lr": config["lr"], "seed": 0} for run, config in configs.items()]
    outputs = {name: tmp_path / "study" / f"{name}.parquet" for name in ("runs", "run_accuracy", "selection")}
    study_tables(StudyTablesSpec(coords, {"ar": ["train", "test"]},
                                 [runs / run / "eval" / f"step{step}" / "behaviour.parquet" for run, step in tables], [],
                                 outputs, status_files=[runs / run / "status.json" for run in configs]))
    listed = pd.read_parquet(outputs["runs"]).set_index("run")
    assert listed.loc["nan", "status"] == "failed" and listed.loc["nan", "failed_step"] == fault["step"]
    assert listed.loc["ok", "status"] == "ok" and pd.isna(listed.loc["ok", "failed_step"])
    accuracy = pd.read_parquet(outputs["run_accuracy"])
    assert accuracy.loc[accuracy.run == "nan", "value"].isna().all() and not accuracy.loc[accuracy.run == "nan", "selected"].any()
    assert (accuracy.loc[accuracy.run == "ok", "step"] == 30).all()
    assert pd.read_parquet(outputs["selection"])["lr"].tolist() == [3e-3]


# The workflow test: one run long enough to be killed mid-way (a second or two of training, a
# resumable state every 50 steps), and one that diverges.
STUDY = {
    "study": "resilience",
    "device": "cpu",
    "threads": 1,
    "languages": {"ar": LANGUAGE},
    "models": {"attention": MODEL},
    "training": {"lr": 0.003, "batch_size": 16, "steps": 1200, "checkpoints": [600], "state_every": 50, "seed": 0},
    "runs": {"long": {"language": "ar", "model": "attention"},
             "nan": {"language": "ar", "model": "attention", "train": DIVERGING}},
    "evaluators": {"behaviour": {"checkpoints": "final", "num_examples": 32}},
}
OUT = Path("results") / STUDY["study"]
KILL_AFTER = 300  # kill once a state of at least this step is on disk (of 1200; the checkpoint is at 600)
TARGET = str(OUT / "study" / "runs.parquet")  # the aggregation: every train and evaluate job, no figures


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    configfile = write_study(workdir, STUDY)
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
            "--configfile", str(configfile), "--cores", "2", *args]


def run_snakemake(workdir: Path, *args: str) -> str:
    proc = subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def saved_step(partial: Path) -> int:
    """The step of the state a restart would resume from (0: none readable)."""
    for name in ("train_state.pt", "train_state.prev.pt"):
        try:
            return int(torch.load(partial / name, weights_only=True)["step"])
        except Exception:  # not there yet, or replaced while we read it
            continue
    return 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def uninterrupted_reference(language: Path, out: Path) -> Path:
    """Run ``long`` of ``STUDY`` trained and evaluated in this process by the stage functions the
    workflow calls, never interrupted: the result the killed workflow must reproduce."""
    from tinylang.config import load_study
    from tinylang.stages import EvaluateSpec, TrainSpec, evaluate, train

    run, runs = load_study(STUDY).run("long"), out / "runs" / "long"
    train(TrainSpec("long", run.model, run.train, language, runs / "checkpoints", runs / "train_log.parquet",
                    device="cpu", progress=False))
    evaluate(EvaluateSpec.build("long", 1200, {"behaviour": STUDY["evaluators"]["behaviour"]}, runs / "checkpoints",
                                language, runs / "eval" / "step1200", device="cpu"))
    return out


@pytest.mark.slow
def test_a_sigkilled_workflow_resumes_to_the_uninterrupted_result(tmp_path):
    victim = tmp_path / "killed"
    victim.mkdir()
    started = time.monotonic()
    with open(victim / "snakemake.out", "w") as victim_out:
        proc = subprocess.Popen(snakemake_command(victim, TARGET), stdout=victim_out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: Snakemake and its jobs
        partial = victim / OUT / "runs" / "long" / "partial"
        try:
            while saved_step(partial) < KILL_AFTER:
                assert proc.poll() is None, "the workflow ended before the training job wrote a resumable state"
                assert time.monotonic() - started < 240, "no resumable state after 240 s"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        killed = time.monotonic() - started
        deadline = time.monotonic() + 10
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_alive(proc.pid), "a process of the killed workflow survived SIGKILL"

    kill_step = saved_step(partial)
    assert KILL_AFTER <= kill_step < 1200
    assert not (partial / "checkpoints" / "step1200.pt").exists()
    assert not (victim / OUT / "runs" / "long" / "checkpoints").exists()

    # A killed Snakemake leaves its lock behind: unlock, then rerun what was incomplete.
    with snakemake_dag(victim, STUDY) as dag:
        dag.unlock()
    run_snakemake(victim, "--rerun-incomplete", TARGET)
    train_log = (victim / OUT / "logs" / "train" / "long.log").read_text()
    assert f"run long: resuming from step {kill_step} of 1200" in train_log
    # Snakemake deletes a job's log before rerunning it; the killed attempt's lines are kept.
    assert "an earlier attempt of this job was interrupted; its log:" in train_log
    assert train_log.count("run long: attention model") == 2  # the killed attempt's start, then this one's
    print(f"killed at training step {kill_step} after {killed:.1f} s; everything done after "
          f"{time.monotonic() - started:.1f} s")

    # Bit-identical on the CPU: weights, the train log's losses and the behaviour table.
    reference = uninterrupted_reference(victim / OUT / "languages" / "ar", tmp_path / "reference")
    for step in (0, 600, 1200):
        name = Path("runs") / "long" / "checkpoints" / f"step{step}.pt"
        assert same_weights(weights(reference / name), weights(victim / OUT / name)), name
    columns = ["step", "epoch", "loss", "lr"]
    logs = [pd.read_parquet(w / "runs" / "long" / "train_log.parquet")[columns] for w in (reference, victim / OUT)]
    pd.testing.assert_frame_equal(*logs)
    behaviour = Path("runs") / "long" / "eval" / "step1200" / "behaviour.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(reference / behaviour), pd.read_parquet(victim / OUT / behaviour))
    assert not (victim / OUT / "runs" / "long" / "partial").exists()

    # The diverging run failed without stopping the workflow, and the aggregation says so.
    out = victim / OUT
    runs = pd.read_parquet(out / "study" / "runs.parquet").set_index("run")
    status = json.loads((out / "runs" / "nan" / "status.json").read_text())
    assert status["status"] == "failed" and runs.loc["nan", "status"] == "failed"
    assert runs.loc["nan", "failed_step"] == status["step"] and runs.loc["long", "status"] == "ok"
    assert sorted(p.name for p in (out / "runs" / "nan" / "checkpoints").glob("*.pt")) == ["step0.pt", "step1.pt"]
    empty = pd.read_parquet(out / "runs" / "nan" / "eval" / "step1200" / "behaviour.parquet")
    assert empty.empty and list(empty.columns) == list(pd.read_parquet(out / behaviour).columns)
    accuracy = pd.read_parquet(out / "study" / "run_accuracy.parquet")
    assert accuracy.loc[accuracy.run == "nan", "value"].isna().all()
    assert set(accuracy.loc[accuracy.selected, "run"]) == {"long"}
