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


def test_kl_to_the_target_distribution_on_atr(tmp_path):
    """ATR examples with several valid answers: KL(target ‖ model) and set accuracy, checked
    against a direct computation from the stored answer counts."""
    from tinylang.evaluation.behaviour import example_scores
    from tinylang.languages import read_split

    config = {"type": "atr", "num_terminals": 8, "num_nonterminals": 4, "max_rhs_len": 3,
              "max_rules_per_nt": 3, "max_depth": 4, "max_length": 60, "no_sibling_queries": True,
              "seed": 0, "splits": {"train": 4, "test": 40}}
    write_language(parse_language_config(config), tmp_path)
    tensors = load_tensors(tmp_path, "test")
    assert tensors.answer_set is not None
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1),
                        len(read_meta(tmp_path)["vocabulary"]), int(tensors.lengths.max())).eval()
    scores = example_scores(model, tensors, batch_size=7)

    raw = read_split(tmp_path, "test")
    with torch.no_grad():
        ids = tensors.input_ids
        mask = torch.zeros(ids.shape, dtype=torch.bool)
        mask[torch.arange(len(ids)), tensors.predicts_answer] = True
        logp = model(ids, select=mask).log_softmax(-1)
    for i, (answers, counts) in enumerate(zip(raw.answer_set, raw.answer_counts)):
        target = np.asarray(counts, dtype=float) / np.sum(counts)
        expected = float(np.sum(target * (np.log(target) - logp[i, list(answers)].numpy())))
        assert scores.kl_target[i] == pytest.approx(expected, abs=1e-5)
        assert scores.set_accuracy[i] == float(int(logp[i].argmax()) in set(answers))
    assert (scores.kl_target >= -1e-6).all()
    assert (scores.set_accuracy >= scores.accuracy).all()  # the sampled answer is one of the set
    several = raw.answer_set.map(len) > 1
    assert several.any(), "the fixture should have examples with several valid answers"

    table = evaluate_behaviour(model, {"test": tensors})
    assert {"kl_target", "set_accuracy"} <= set(table.metric)
