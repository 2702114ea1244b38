"""Every kind of file the workflow writes, damaged after the fact (bytes flipped anywhere, or
cut short), is refused by the reader, or reads back exactly as written: no stage computes on
damaged data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tinylang.integrity import content_digest, is_intact, sealed
from tinylang.languages import parse_language_config, read_meta, read_split, write_language
from tinylang.languages.base import LanguageDataError
from tinylang.models import CheckpointError, ModelConfig, build_model, load_checkpoint, save_checkpoint
from tinylang.tables import TableError, read_table, write_table, written_by
from tinylang.training.state import STATE_KEYS, read_state, write_state

SMALL_AR = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 64, "test": 16}}


def _checkpoint(tmp_path: Path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 19, 12)
    path = tmp_path / "checkpoints" / "step3.pt"
    save_checkpoint(path, model, 3)
    return path, lambda: [t.clone() for t in load_checkpoint(path)[0].state_dict().values()], CheckpointError


def _state(tmp_path: Path):
    path = tmp_path / "train_state.pt"
    state = {key: 0 for key in STATE_KEYS} | {"step": 7, "model": {"w": torch.randn(40, 8)}, "fingerprint": {"a": 1}}
    write_state(path, tmp_path / "prev.pt", state)

    def read():
        state, _ = read_state([path], {"a": 1}, "r")  # a damaged state is skipped (None), never resumed
        return None if state is None else (state["step"], state["model"]["w"].clone())
    return path, read, ()


def _language(tmp_path: Path, name: str):
    out = tmp_path / "ar"
    write_language(parse_language_config(SMALL_AR), out)
    if name == "meta.json":
        return out / name, lambda: read_meta(out), LanguageDataError
    return out / name, lambda: read_split(out, "train"), LanguageDataError


def _table(tmp_path: Path):
    path = tmp_path / "behaviour.parquet"
    rng = np.random.default_rng(0)
    write_table(pd.DataFrame({"run": ["a"] * 300, "step": np.arange(300), "value": rng.random(300)}), path)
    return path, lambda: read_table(path), TableError


KINDS = {
    "checkpoint": _checkpoint,
    "train state": _state,
    "split": lambda tmp: _language(tmp, "train.parquet"),
    "meta.json": lambda tmp: _language(tmp, "meta.json"),
    "evaluation table": _table,
}


def _same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def _damages(data: bytes):
    for i in range(16):
        flipped = bytearray(data)
        start = int(len(data) * i / 16)
        flipped[start:start + 8] = bytes(b ^ 0x5A for b in flipped[start:start + 8])
        yield f"flip at {start}", bytes(flipped)
    for keep in (0.0, 0.3, 0.9):
        yield f"cut to {keep:.0%}", data[: int(len(data) * keep)]


@pytest.mark.parametrize("kind", KINDS)
def test_damage_is_refused_or_harmless(tmp_path, kind):
    path, read, error = KINDS[kind](tmp_path)
    original, data = read(), path.read_bytes()
    assert original is not None
    for damage, damaged in _damages(data):
        path.write_bytes(damaged)
        try:
            got = read()
        except Exception as err:
            assert error and isinstance(err, error), f"{kind}, {damage}: {type(err).__name__}: {err}"
            assert str(path) in str(err), f"{kind}, {damage}: the message does not name the file"
            continue
        assert got is None or _same(got, original), f"{kind}, {damage}: read other data without noticing"


def test_a_damaged_evaluation_table_names_its_checkpoints_job_as_the_remedy(tmp_path):
    path = tmp_path / "runs" / "r" / "eval" / "step12" / "behaviour.parquet"
    write_table(pd.DataFrame({"run": ["a"], "value": [1.0]}), path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(TableError, match=f"--forcerun {path.parent} "):  # the evaluate job's folder output
        read_table(path)
    assert written_by(tmp_path / "study" / "runs.parquet") == tmp_path / "study" / "runs.parquet"


def test_digest_covers_values_keys_dtypes_and_shapes():
    base = {"w": torch.zeros(2, 3), "step": 1}
    assert is_intact(sealed(base)) is True and is_intact(base) is None
    for other in ({"w": torch.zeros(3, 2), "step": 1}, {"w": torch.zeros(2, 3, dtype=torch.float64), "step": 1},
                  {"w": torch.zeros(2, 3), "step": 2}, {"v": torch.zeros(2, 3), "step": 1}):
        assert content_digest(other) != content_digest(base)
    assert content_digest(json.loads(json.dumps({"a": [1, 2]}))) == content_digest({"a": [1, 2]})
