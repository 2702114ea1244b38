"""The training loop, schedules and device resolution, on a tiny associative-recall language."""

from __future__ import annotations

import logging
import math
import shutil

import pandas as pd
import pytest
import torch

from tinylang.device import resolve_device
from tinylang.languages import parse_language_config, read_split, write_language
from tinylang.models import ModelConfig, load_checkpoint
from tinylang.training import TrainConfig, lr_lambda, train_run
from tinylang.training import loop as loop_module

TINY_AR = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 4, "seed": 0, "splits": {"train": 2000, "test": 200}}
MODEL = ModelConfig(mixer="attention", d_model=32, n_layers=2)


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    path = tmp_path_factory.mktemp("language") / "ar"
    write_language(parse_language_config(TINY_AR), path)
    return path


def train(language, out, **overrides):
    config = {"lr": 3e-3, "batch_size": 32, "steps": 60, "log_every": 10, "warmup_steps": 5, "seed": 0} | overrides
    train_run(MODEL, TrainConfig(**config), language, out, device="cpu", run_name="test", progress=False)
    return pd.read_parquet(out / "train_log.parquet")


def weights(path):
    model, _ = load_checkpoint(path)
    return model.state_dict()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def short_run(language, tmp_path_factory):
    out = tmp_path_factory.mktemp("short")
    log = train(language, out, steps=150, checkpoints=[50])
    return out, log


def test_short_run_lowers_the_loss(short_run):
    _, log = short_run
    assert list(log.columns) == ["step", "epoch", "loss", "lr", "tokens_per_s", "steps_per_s", "wall_time_s"]
    assert log["step"].tolist() == list(range(10, 151, 10))
    assert log["epoch"].tolist()[0] == 0 and log["epoch"].iloc[-1] == 150 // math.ceil(2000 / 32)
    first, last = log["loss"].iloc[0], log["loss"].iloc[-1]
    assert first > math.log(8)  # not yet better than guessing among the values
    assert last < first - 0.8, (first, last)
    assert (log["lr"] > 0).all() and (log["steps_per_s"] > 0).all() and log["wall_time_s"].is_monotonic_increasing


def test_checkpoints_at_exactly_the_configured_steps(short_run, language):
    out, _ = short_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step0.pt", "step150.pt", "step50.pt"]
    assert not (out / "train_state.pt").exists()  # removed once the final outputs are written
    longest = max(len(t) for split in ("train", "test") for t in read_split(language, split)["tokens"])
    for step in (0, 50, 150):
        model, info = load_checkpoint(out / "checkpoints" / f"step{step}.pt")
        assert info["step"] == step and info["max_len"] == longest
        assert info["extra"]["run"] == "test" and info["extra"]["train_config"]["lr"] == 3e-3
        assert len(info["extra"]["language_config_hash"]) == 64
    assert not same_weights(weights(out / "checkpoints" / "step0.pt"), weights(out / "checkpoints" / "step150.pt"))


def test_same_seed_same_losses_other_seed_other_losses(language, tmp_path):
    a = train(language, tmp_path / "a", seed=1)
    b = train(language, tmp_path / "b", seed=1)
    c = train(language, tmp_path / "c", seed=2)
    pd.testing.assert_frame_equal(a[["step", "epoch", "loss", "lr"]], b[["step", "epoch", "loss", "lr"]])
    assert not a["loss"].equals(c["loss"])
    assert same_weights(weights(tmp_path / "a/checkpoints/step60.pt"), weights(tmp_path / "b/checkpoints/step60.pt"))


def test_epochs_keep_the_last_partial_batch(language, tmp_path):
    log = train(language, tmp_path, steps=None, epochs=2, batch_size=300, log_every=3)
    assert log["step"].tolist() == [3, 6, 9, 12, 14]  # 7 batches an epoch, the 7th of 200 examples
    assert log["epoch"].tolist() == [0, 0, 1, 1, 1]


class Preempted(Exception):
    pass


def preempt_at_final_checkpoint(monkeypatch, total):
    """Make the run die as it reaches its last checkpoint, as a killed job would."""
    real = loop_module.save_checkpoint

    def save(path, model, step, extra=None):
        if step == total:
            raise Preempted
        real(path, model, step, extra)

    monkeypatch.setattr(loop_module, "save_checkpoint", save)


# Batch 100 → 20 batches an epoch: step 20 ends an epoch, step 30 is inside one; the log
# rows (every 7 steps) do not line up with the checkpoints.
@pytest.mark.parametrize("resume_at", [20, 30])
def test_resume_gives_the_uninterrupted_result(language, tmp_path, monkeypatch, caplog, resume_at):
    config = {"steps": 50, "batch_size": 100, "log_every": 7, "checkpoints": [resume_at]}
    whole = train(language, tmp_path / "whole", **config)

    with monkeypatch.context() as patch:
        preempt_at_final_checkpoint(patch, 50)
        with pytest.raises(Preempted):
            train(language, tmp_path / "resumed", **config)
    assert torch.load(tmp_path / "resumed/train_state.pt", weights_only=True)["step"] == resume_at

    with caplog.at_level(logging.INFO, logger="tinylang.training"):
        resumed = train(language, tmp_path / "resumed", **config)
    assert f"resuming from step {resume_at} of 50" in caplog.text
    assert not (tmp_path / "resumed/train_state.pt").exists()
    columns = ["step", "epoch", "loss", "lr"]
    pd.testing.assert_frame_equal(whole[columns], resumed[columns])
    for step in (0, resume_at, 50):
        name = f"checkpoints/step{step}.pt"
        assert same_weights(weights(tmp_path / "whole" / name), weights(tmp_path / "resumed" / name))


def test_state_of_another_configuration_is_not_resumed(language, tmp_path, monkeypatch, caplog):
    config = {"steps": 40, "checkpoints": [20]}
    with monkeypatch.context() as patch:
        preempt_at_final_checkpoint(patch, 40)
        with pytest.raises(Preempted):
            train(language, tmp_path / "run", **config)
    assert (tmp_path / "run/train_state.pt").exists()
    with caplog.at_level(logging.INFO, logger="tinylang.training"):
        changed = train(language, tmp_path / "run", **config | {"lr": 1e-3, "checkpoints": [10]})
    assert "different configuration" in caplog.text and "lr: 0.003 → 0.001" in caplog.text
    assert "resuming" not in caplog.text
    # The earlier run's step-20 checkpoint is gone: the directory holds this run's only.
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["step0.pt", "step10.pt", "step40.pt"]
    fresh = train(language, tmp_path / "fresh", **config | {"lr": 1e-3, "checkpoints": [10]})
    pd.testing.assert_frame_equal(changed[["step", "loss"]], fresh[["step", "loss"]])


def preempt_after(monkeypatch, step):
    """Make the run die just after it wrote its resumable state at ``step``."""
    real = loop_module.write_state

    def write(path, prev, state):
        real(path, prev, state)
        if state["step"] == step:
            raise Preempted

    monkeypatch.setattr(loop_module, "write_state", write)


def test_state_every_writes_resumable_states_between_checkpoints(language, tmp_path, monkeypatch, caplog):
    config = {"steps": 50, "batch_size": 100, "log_every": 7, "checkpoints": [20], "state_every": 15}
    assert TrainConfig(**config).state_steps(50) == [15, 20, 30, 45]
    whole = train(language, tmp_path / "whole", **config)
    with monkeypatch.context() as patch:
        preempt_after(patch, 45)
        with pytest.raises(Preempted):
            train(language, tmp_path / "resumed", **config)
    assert torch.load(tmp_path / "resumed/train_state.pt", weights_only=True)["step"] == 45
    assert torch.load(tmp_path / "resumed/train_state.prev.pt", weights_only=True)["step"] == 30
    # The interval does not change what is trained: a state written at another one resumes.
    with caplog.at_level(logging.INFO, logger="tinylang.training"):
        resumed = train(language, tmp_path / "resumed", **config | {"state_every": 40})
    assert "resuming from step 45 of 50" in caplog.text
    assert not list((tmp_path / "resumed").glob("train_state*"))
    columns = ["step", "epoch", "loss", "lr"]
    pd.testing.assert_frame_equal(whole[columns], resumed[columns])
    for step in (0, 20, 50):
        name = f"checkpoints/step{step}.pt"
        assert same_weights(weights(tmp_path / "whole" / name), weights(tmp_path / "resumed" / name))


STATE_EVERY_15 = {"steps": 50, "batch_size": 100, "log_every": 7, "state_every": 15}


def whole_and_preempted_at_45(language, tmp_path, monkeypatch) -> pd.DataFrame:
    """An uninterrupted run's log (in ``whole/``) and the same run killed after step 45 (in
    ``resumed/``, with states from steps 30 and 45)."""
    whole = train(language, tmp_path / "whole", **STATE_EVERY_15)
    with monkeypatch.context() as patch:
        preempt_after(patch, 45)
        with pytest.raises(Preempted):
            train(language, tmp_path / "resumed", **STATE_EVERY_15)
    return whole


@pytest.mark.parametrize("damaged", [["train_state.pt"], ["train_state.pt", "train_state.prev.pt"]])
def test_a_truncated_state_is_skipped_with_a_warning(language, tmp_path, monkeypatch, caplog, damaged):
    config = STATE_EVERY_15
    whole = whole_and_preempted_at_45(language, tmp_path, monkeypatch)
    for name in damaged:
        path = tmp_path / "resumed" / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.INFO, logger="tinylang.training"):
        resumed = train(language, tmp_path / "resumed", **config)
    for name in damaged:
        assert f"train state {tmp_path / 'resumed' / name} is unreadable" in caplog.text
    if len(damaged) == 1:
        assert "resuming from step 30 of 50" in caplog.text  # the previous state
    else:
        assert "resuming" not in caplog.text and "no usable train state" in caplog.text
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    columns = ["step", "epoch", "loss", "lr"]
    pd.testing.assert_frame_equal(whole[columns], resumed[columns])
    assert same_weights(weights(tmp_path / "whole/checkpoints/step50.pt"), weights(tmp_path / "resumed/checkpoints/step50.pt"))


def test_a_state_whose_contents_changed_is_not_resumed(language, tmp_path, monkeypatch, caplog):
    """A changed tensor (which the file's zip structure does not notice) fails the state's
    SHA-256: the run resumes from the previous state and ends as an uninterrupted run."""
    config = STATE_EVERY_15
    whole = whole_and_preempted_at_45(language, tmp_path, monkeypatch)
    path = tmp_path / "resumed" / "train_state.pt"
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1e-3
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="tinylang.training"):
        resumed = train(language, tmp_path / "resumed", **config)
    assert f"train state {path} is damaged" in caplog.text and "resuming from step 30 of 50" in caplog.text
    columns = ["step", "epoch", "loss", "lr"]
    pd.testing.assert_frame_equal(whole[columns], resumed[columns])
    assert same_weights(weights(tmp_path / "whole/checkpoints/step50.pt"), weights(tmp_path / "resumed/checkpoints/step50.pt"))


def test_a_nan_loss_stops_the_run_and_keeps_the_good_checkpoints(language, tmp_path, caplog):
    from tinylang.training.loop import TrainingDiverged

    # Warmup makes step 1 a zero update; then a learning rate of 1e6 without clipping diverges.
    config = {"lr": 1e6, "grad_clip": None, "steps": 60, "checkpoints": [1, 2, 30], "state_every": 2, "log_every": 1}
    with caplog.at_level(logging.INFO, logger="tinylang.training"), pytest.raises(TrainingDiverged) as info:
        train(language, tmp_path, **config)
    fault = info.value
    assert 2 < fault.step < 30 and fault.reason in ("loss is nan", "loss is inf")
    assert fault.lr == pytest.approx(1e6 * lr_lambda(TrainConfig(steps=60, warmup_steps=5), 60)(fault.step - 1))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"run test: {fault.reason} at step {fault.step} (learning rate {fault.lr:g})" in errors[0]
    assert fault.checkpoints == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step0.pt", "step1.pt", "step2.pt"]
    for step in (1, 2):
        assert all(torch.isfinite(v).all() for v in weights(tmp_path / f"checkpoints/step{step}.pt").values())
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert log["step"].tolist() == list(range(1, fault.step)) and log["loss"].notna().all()
    assert not list(tmp_path.glob("train_state*"))  # resuming would only repeat the fault


def test_missing_language_is_reported_before_any_work(language, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(tmp_path / "nowhere", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        train(empty, tmp_path / "out")
    partial = tmp_path / "partial"
    shutil.copytree(language, partial)
    (partial / "test.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="test.parquet"):
        train(partial, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def cfg(**kw):
    return TrainConfig(steps=100, **kw)


def test_warmup_ramps_from_zero():
    f = lr_lambda(cfg(warmup_steps=10, schedule="constant"), 100)
    assert f(0) == 0.0
    assert [f(s) for s in range(11)] == pytest.approx([s / 10 for s in range(11)])
    assert f(10) == f(50) == f(100) == 1.0


def test_linear_decays_to_min_lr_ratio():
    f = lr_lambda(cfg(warmup_steps=10, schedule="linear", min_lr_ratio=0.1), 100)
    assert f(10) == 1.0
    assert f(55) == pytest.approx(0.55)
    assert f(100) == pytest.approx(0.1) and f(120) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 101)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_cosine_is_monotone_after_warmup():
    f = lr_lambda(cfg(warmup_steps=5, schedule="cosine", min_lr_ratio=0.2), 100)
    values = [f(s) for s in range(5, 101)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert f(5 + 95 // 2) == pytest.approx(0.6, abs=0.02)  # halfway down


def test_constant_stays_one():
    f = lr_lambda(cfg(schedule="constant", min_lr_ratio=0.5), 100)
    assert {f(s) for s in range(0, 150)} == {1.0}


def test_schedule_drives_the_logged_lr(short_run):
    _, log = short_run
    f = lr_lambda(TrainConfig(steps=150, warmup_steps=5), 150)
    assert log["lr"].tolist() == pytest.approx([3e-3 * f(s - 1) for s in log["step"]])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="'cuda' was requested"):
            resolve_device("cuda")


def test_file_order_is_the_splits_own_order_every_epoch_and_shuffle_a_seeded_permutation():
    from tinylang.training.loop import _epoch_order

    lengths = torch.arange(1, 11)
    generator = torch.Generator().manual_seed(0)
    order, widths, tokens = _epoch_order(generator, lengths, 4, torch.device("cpu"), "file")
    assert order.tolist() == list(range(10)) and widths == [4, 8, 10] and tokens == [10, 26, 19]
    state = generator.get_state()
    shuffled, _, _ = _epoch_order(generator, lengths, 4, torch.device("cpu"), "shuffle")
    again, _, _ = _epoch_order(torch.Generator().set_state(state), lengths, 4, torch.device("cpu"), "shuffle")
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    assert shuffled.tolist() == again.tolist()


def test_order_is_a_train_config_field_refused_when_unknown():
    from pydantic import ValidationError

    from tinylang.training import TrainConfig

    assert TrainConfig(steps=1).order == "shuffle" and TrainConfig(steps=1, order="file").order == "file"
    with pytest.raises(ValidationError, match="order"):
        TrainConfig(steps=1, order="sorted")


def test_a_run_draws_each_epochs_order_as_its_config_says(language, tmp_path, monkeypatch):
    kinds = []
    draw = loop_module._epoch_order

    def recording(*args):
        kinds.append(args[-1])
        return draw(*args)

    monkeypatch.setattr(loop_module, "_epoch_order", recording)
    train(language, tmp_path / "file", steps=70, order="file")  # 63 batches an epoch: two epochs drawn
    assert kinds == ["file", "file"]


def test_an_unreadable_state_is_reported_without_torchs_advice_to_unpickle_it(tmp_path, caplog):
    from tinylang.training.state import read_state

    path = tmp_path / "train_state.pt"
    torch.save({"format": "x", "thing": Preempted()}, path)  # weights_only refuses the object
    with caplog.at_level(logging.WARNING, logger="tinylang.training"):
        assert read_state([path], {}, "r") == (None, None)
    assert f"train state {path} is unreadable (UnpicklingError: Weights only load failed)" in caplog.text
    assert "weights_only" not in caplog.text


def test_a_second_trainer_in_the_same_run_folder_stops_and_a_killed_one_frees_it(language, tmp_path):
    """The orphan of a killed Snakemake must not share ``partial/`` with a new trainer: the
    folder's flock stops the second one with a message; a holder killed with SIGKILL frees it."""
    import signal
    import subprocess
    import sys

    from tinylang.training.state import LOCK_FILE, RunFolderInUse

    out = tmp_path / "partial"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / LOCK_FILE)!r}, os.O_RDONLY | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderInUse, match=f"another trainer is working in {out}"):
            train(language, out, steps=5)
        assert not (out / "checkpoints").exists()  # it touched nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    log = train(language, out, steps=5, log_every=5)
    assert log["step"].tolist() == [5]


def test_the_log_gets_a_progress_line_at_every_tenth_of_the_run(language, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tinylang.training"):
        log = train(language, tmp_path / "run", steps=100)
    lines = [r.getMessage() for r in caplog.records if " steps (" in r.getMessage() and "left" in r.getMessage()]
    assert [line.split(": ")[1].split(" steps")[0] for line in lines] == [f"{s}/100" for s in range(10, 100, 10)]
    losses = log.set_index("step")["loss"]
    for line in lines:
        step = int(line.split(": ")[1].split("/")[0])
        assert line.startswith(f"run test: {step}/100 steps ({step} %), ") and " steps/s, " in line
        assert line.endswith(f", loss {losses[step]:.4g}")


def test_progress_lines_come_at_least_every_interval_between_tenths(monkeypatch, caplog):
    from tinylang import progress

    clock = iter([0.0, 10.0, 70.0, 80.0, 200.0])  # the start, then one reading per update
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines = progress.ProgressLines(logging.getLogger("tinylang.test"), "job", 1000, every_s=60.0)
    with caplog.at_level(logging.INFO, logger="tinylang.test"):
        for done in (1, 2, 3, 4):  # far from a tenth: only the elapsed time triggers
            lines.update(done)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["job: 2/1000 steps (0 %)", "job: 4/1000 steps (0 %)"]
    assert caplog.records[0].getMessage().endswith("0.0286 steps/s, 9h 42m left")  # 2 steps in 70 s
