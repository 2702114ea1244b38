"""The tracking section and the tracked-run lifecycle, with a recording stand-in backend (the
real backends are read back from the shared study in tests/e2e/test_workflow.py)."""

from __future__ import annotations

import importlib.util
import json
import logging

import pandas as pd
import pytest
from pydantic import ValidationError

from tinylang.tracking import TrackingConfig, flat_params, log_study_results, tracked_run
from tinylang.tracking.backends import BACKENDS, Backend

CALLS: list[tuple] = []


class Recorder(Backend):
    name, package, requirement = "recorder", "json", "json"

    def start(self, run, params, resume_id):
        self.id = resume_id or f"{run}-new"
        CALLS.append(("start", run, self.id, params))

    def log(self, metrics, step):
        if "explode" in metrics:
            raise OSError("disk full")
        CALLS.append(("log", self.id, step, metrics))

    def finish(self, ok):
        CALLS.append(("finish", self.id, ok))


@pytest.fixture
def recorder(monkeypatch):
    monkeypatch.setitem(BACKENDS._entries, "recorder", Recorder)
    CALLS.clear()
    return TrackingConfig(backend="recorder")


@pytest.mark.parametrize("given, expected", [("none", []), (None, []), ("recorder", ["recorder"]),
                                             (["recorder"], ["recorder"])])
def test_backend_takes_none_a_name_or_a_list(recorder, given, expected):
    assert TrackingConfig(backend=given).backend == expected


def test_an_unknown_or_missing_backend_is_refused_with_the_fix(monkeypatch):
    with pytest.raises(ValidationError, match="unknown tracking backend 'neptune'; allowed: mlflow, tensorboard"):
        TrackingConfig(backend="neptune")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(ValidationError, match=r"needs the wandb package: pip install 'tinylang\[tracking\]'"):
        TrackingConfig(backend=["wandb"])


def test_a_run_is_started_logged_finished_and_resumed_by_its_ids(recorder, tmp_path):
    ids = tmp_path / "runs" / "a" / "tracking.json"
    with tracked_run(recorder, "s", tmp_path, "a", ids, {"lr": 0.1}) as tracker:
        tracker.log({"train/loss": 2.0}, 10)
    assert json.loads(ids.read_text()) == {"recorder": "a-new"}
    with tracked_run(recorder, "s", tmp_path, "a", ids, resume=True) as tracker:
        tracker.failed = True
    assert CALLS == [("start", "a", "a-new", {"lr": 0.1}), ("log", "a-new", 10, {"train/loss": 2.0}),
                     ("finish", "a-new", True), ("start", "a", "a-new", {}), ("finish", "a-new", False)]


def test_a_body_that_raises_finishes_the_run_as_failed(recorder, tmp_path):
    with pytest.raises(RuntimeError), tracked_run(recorder, "s", tmp_path, "a", tmp_path / "ids.json", {}):
        raise RuntimeError("training broke")
    assert CALLS[-1] == ("finish", "a-new", False)


def test_a_backend_that_fails_to_log_is_reported_once_and_left_out(recorder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING), tracked_run(recorder, "s", tmp_path, "a", tmp_path / "i.json", {}) as t:
        t.log({"explode": 1.0}, 1)
        t.log({"train/loss": 1.0}, 2)
    assert "recorder failed to log (OSError: disk full); not logging to it again" in caplog.text
    assert not any(c[0] == "log" for c in CALLS)  # the second metric did not reach the failed backend
    assert CALLS[-1] == ("start", "a", "a-new", {})  # and it is not finished either: it is out


def test_study_results_go_to_each_tracked_run(recorder, tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "tracking.json").write_text(json.dumps({"recorder": "a-7"}))
    curves = pd.DataFrame({"run": ["a", "a", "a", "b"], "step": [0, 10, 10, 10],
                           "quantity": ["accuracy", "accuracy", "attrib@Value", "accuracy"],
                           "value": [0.1, 0.9, float("nan"), 0.5]})
    final = pd.DataFrame({"run": ["a", "a", "b"], "step": [10, 10, 10], "split": ["train", "test", "test"],
                          "metric": ["accuracy"] * 3, "value": [1.0, 0.8, 0.5]})
    log_study_results(recorder, "s", tmp_path, {"curves": curves, "run_accuracy": final})
    logged = [(c[2], c[3]) for c in CALLS if c[0] == "log"]
    assert logged == [(0, {"eval/accuracy": 0.1}), (10, {"eval/accuracy": 0.9}),
                      (10, {"final/train/accuracy": 1.0, "final/test/accuracy": 0.8})]  # run b: no record


def test_nested_params_are_flattened_with_dots():
    assert flat_params("model", {"d_model": 64, "mixer_args": {"d_state": 16}}) == {
        "model.d_model": 64, "model.mixer_args.d_state": 16}
