"""Checkpoints carry a SHA-256 of their contents: a changed byte is refused with the file named
and a remedy; files from before the hash load unchecked."""

from __future__ import annotations

import pytest
import torch

from tinylang.models import CheckpointError, ModelConfig, build_model, load_checkpoint, save_checkpoint
from tinylang.models.checkpoint import FORMAT, load_run_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 12, 10)
    path = tmp_path / "runs" / "r" / "checkpoints" / "step5.pt"
    save_checkpoint(path, model, 5)
    return path, model


def test_a_checkpoint_round_trips_and_stores_its_hash(checkpoint):
    path, model = checkpoint
    assert len(torch.load(path, weights_only=True)["sha256"]) == 64
    loaded, info = load_checkpoint(path)
    assert info["step"] == 5 and "sha256" not in info
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_changed_weight_is_refused_with_the_file_and_the_command_that_retrains(checkpoint):
    path, _ = checkpoint
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name].view(-1)[0] += 1  # what a flipped bit in the tensor data does
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="is damaged") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and f"--forcerun {path.parent}" in str(info.value)


@pytest.mark.parametrize("where", [i / 20 for i in range(20)])
def test_flipped_bytes_are_detected_or_touch_no_data(checkpoint, where):
    """16 bytes flipped at any place: the load refuses the file, or (padding and unused fields of
    the zip container) loads exactly the weights that were saved."""
    path, model = checkpoint
    data = bytearray(path.read_bytes())
    start = int(len(data) * where)
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    path.write_bytes(bytes(data))
    try:
        loaded, _ = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_from_before_the_hash_loads(checkpoint):
    path, model = checkpoint
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]
    assert payload["format"] == FORMAT
    torch.save(payload, path)
    load_checkpoint(path)


def test_a_checkpoint_under_another_runs_or_steps_name_is_refused(tmp_path):
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 12, 8)
    save_checkpoint(tmp_path / "step5.pt", model, 5, extra={"run": "a"})
    load_run_checkpoint(tmp_path, 5, "a")
    (tmp_path / "step5.pt").rename(tmp_path / "step6.pt")
    with pytest.raises(CheckpointError, match=r"holds run 'a' at step 5, not run 'a' at step 6"):
        load_run_checkpoint(tmp_path, 6, "a")
    with pytest.raises(CheckpointError, match=r"not run 'b' at step 6"):
        load_run_checkpoint(tmp_path, 6, "b")
