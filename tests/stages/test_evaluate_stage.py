"""The evaluate stage runs every evaluator of one checkpoint in one call and keeps each table in
the evaluation cache on its own: an unchanged evaluator is read back, a changed one (or any on
a changed checkpoint) is computed again."""

from __future__ import annotations

import logging
from collections import Counter

import pandas as pd
import pytest
import torch

from tinylang.evaluation.evaluators import EVALUATORS
from tinylang.languages import load_tensors, parse_language_config, read_meta, write_language
from tinylang.models import ModelConfig, build_model, save_checkpoint
from tinylang.stages import EvaluateSpec, evaluate

LANGUAGE = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 8, "test": 16}}
EVALUATED = {"behaviour": {"num_examples": 16, "splits": ["test"]}, "probes": {"num_examples": 16, "splits": ["test"]}}


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    path = tmp_path_factory.mktemp("ar")
    write_language(parse_language_config(LANGUAGE), path)
    return path


def save_model(path, language, seed):
    torch.manual_seed(seed)
    max_len = int(load_tensors(language, "test").input_ids.shape[1])
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), len(read_meta(language)["vocabulary"]),
                        max_len)
    save_checkpoint(path / "checkpoints" / "step4.pt", model, 4)


@pytest.fixture
def computed(monkeypatch):
    """How often each evaluator computed a table (a cache hit computes none)."""
    counts = Counter()
    for name in EVALUATED:
        evaluator = EVALUATORS.get(name)
        original = evaluator.run

        def counting(model, tensors, meta, options, _name=name, _original=original):
            counts[_name] += 1
            return _original(model, tensors, meta, options)

        monkeypatch.setattr(evaluator, "run", counting)
    return counts


def spec(run_dir, language, evaluators=EVALUATED, cache=True):
    return EvaluateSpec.build("r", 4, evaluators, run_dir / "checkpoints", language, run_dir / "eval" / "step4",
                              cache_dir=run_dir / "eval_cache" / "step4" if cache else None, device="cpu")


def cache_entries(run_dir):
    return sorted(p.name.split("-")[0] for p in (run_dir / "eval_cache" / "step4").iterdir())


def test_each_evaluator_writes_its_table_and_an_unchanged_one_is_read_back(tmp_path, language, computed, caplog):
    save_model(tmp_path, language, seed=0)
    first = evaluate(spec(tmp_path, language))
    assert list(first) == ["behaviour", "probes"] and computed == {"behaviour": 1, "probes": 1}
    for name, table in first.items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "eval" / "step4" / f"{name}.parquet"), table)
        assert (table["run"] == "r").all() and (table["step"] == 4).all()
    assert cache_entries(tmp_path) == ["behaviour", "probes"]

    changed = {**EVALUATED, "probes": {**EVALUATED["probes"], "num_examples": 12}}
    with caplog.at_level(logging.INFO, logger="tinylang"):
        second = evaluate(spec(tmp_path, language, changed))
    assert computed == {"behaviour": 1, "probes": 2}  # only the changed evaluator ran again
    assert "r: behaviour of checkpoint 4 read from the evaluation cache" in caplog.text
    pd.testing.assert_frame_equal(second["behaviour"], first["behaviour"])
    assert cache_entries(tmp_path) == ["behaviour", "probes"]  # the old probes entry was replaced

    rescheduled = {**changed, "behaviour": {**EVALUATED["behaviour"], "checkpoints": "final"}}
    evaluate(spec(tmp_path, language, rescheduled))  # which checkpoints it analyses changes no table
    assert computed == {"behaviour": 1, "probes": 2}


def test_a_changed_checkpoint_is_evaluated_again(tmp_path, language, computed):
    save_model(tmp_path, language, seed=0)
    first = evaluate(spec(tmp_path, language))
    save_model(tmp_path, language, seed=1)  # retrained: other weights at the same step
    second = evaluate(spec(tmp_path, language))
    assert computed == {"behaviour": 2, "probes": 2}
    assert not first["probes"].equals(second["probes"])


def test_one_evaluators_error_keeps_the_others_tables_cached(tmp_path, language, computed, monkeypatch):
    save_model(tmp_path, language, seed=0)

    def broken(*args):
        raise RuntimeError("probe fit diverged")

    monkeypatch.setattr(EVALUATORS.get("behaviour"), "run", broken)  # the first of the two
    with pytest.raises(RuntimeError, match="probe fit diverged"):
        evaluate(spec(tmp_path, language))
    assert computed["probes"] == 1 and cache_entries(tmp_path) == ["probes"]
    assert (tmp_path / "eval" / "step4" / "probes.parquet").exists()


def test_a_damaged_cache_entry_is_computed_again(tmp_path, language, computed, caplog):
    save_model(tmp_path, language, seed=0)
    first = evaluate(spec(tmp_path, language))
    entry = next((tmp_path / "eval_cache" / "step4").glob("behaviour-*.parquet"))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated after the fact
    with caplog.at_level(logging.WARNING, logger="tinylang"):
        second = evaluate(spec(tmp_path, language))
    assert computed == {"behaviour": 2, "probes": 1}
    assert f"r: the cached behaviour table {entry} is damaged; computing it again" in caplog.text
    pd.testing.assert_frame_equal(second["behaviour"], first["behaviour"])
    assert cache_entries(tmp_path) == ["behaviour", "probes"]


def test_without_a_cache_folder_nothing_is_kept(tmp_path, language, computed):
    save_model(tmp_path, language, seed=0)
    evaluate(spec(tmp_path, language, cache=False))
    evaluate(spec(tmp_path, language, cache=False))
    assert computed == {"behaviour": 2, "probes": 2} and not (tmp_path / "eval_cache").exists()
