"""Behavioural evaluation on a tiny AR language."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinylang.evaluation import evaluate_behaviour
from tinylang.languages import load_tensors, parse_language_config, read_meta, write_language
from tinylang.models import ModelConfig, build_model


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    out = tmp_path_factory.mktemp("ar")
    config = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 4, "seed": 0,
              "splits": {"train": 40, "test": 24}}
    write_language(parse_language_config(config), out)
    return out


@pytest.fixture(scope="module")
def model(language):
    torch.manual_seed(0)
    vocab = len(read_meta(language)["vocabulary"])
    return build_model(ModelConfig(mixer="attention", d_model=16, n_layers=2), vocab, 32)


def test_long_format_and_values(language, model):
    splits = {s: load_tensors(language, s) for s in ("train", "test")}
    df = evaluate_behaviour(model, splits, batch_size=7)
    assert list(df.columns) == ["split", "query_type", "metric", "value", "n"]
    assert set(df.metric) == {"loss", "accuracy", "answer_prob"}
    assert set(df.query_type) == {"KEY", "ALL"}
    assert len(df) == 2 * 2 * 3
    all_rows = df[df.query_type == "ALL"].set_index(["split", "metric"])
    assert all_rows.loc[("train", "loss"), "n"] == 40 and all_rows.loc[("test", "loss"), "n"] == 24

    # Reference: full forward, per-example gather, no batching.
    t = splits["test"]
    logits = model(t.input_ids)[torch.arange(len(t)), t.positions["query_item"]]
    logp = logits.log_softmax(-1)[torch.arange(len(t)), t.answer]
    expected = {"loss": -logp.mean().item(), "answer_prob": logp.exp().mean().item(),
                "accuracy": (logits.argmax(-1) == t.answer).float().mean().item()}
    for metric, value in expected.items():
        assert math.isclose(all_rows.loc[("test", metric), "value"], value, rel_tol=1e-5, abs_tol=1e-6)


def test_per_query_type_rows(language, model):
    t = load_tensors(language, "test")
    t.query_type = np.where(np.arange(len(t)) < 10, "VALUE", t.query_type)  # a second query type
    df = evaluate_behaviour(model, {"test": t})
    n = df[df.metric == "accuracy"].set_index("query_type")["n"]
    assert n.to_dict() == {"KEY": 14, "VALUE": 10, "ALL": 24}
    acc = df[df.metric == "accuracy"].set_index("query_type")["value"]
    assert math.isclose(acc["ALL"], (14 * acc["KEY"] + 10 * acc["VALUE"]) / 24, rel_tol=1e-6)
