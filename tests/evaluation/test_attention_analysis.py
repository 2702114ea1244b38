"""Attention analysis: stored probabilities match the fused path, the mass table is exact,
batch-independent and restores the model, and a trained AR model shows the induction signature."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tinylang.evaluation.attention import (
    OTHER,
    PREDICTS_ANSWER,
    attention_mass,
    attention_summary,
    has_attention,
    storing_attention,
)
from tinylang.languages import (
    load_tensors,
    make_language,
    parse_language_config,
    to_tensors,
)
from tinylang.models import ModelConfig, build_model
from tinylang.models.mixers.attention import Attention, AttentionOptions

KEYS = ["example", "layer", "head", "from_position", "to_position"]


@pytest.fixture(scope="module")
def ar_test(tiny_ar):
    return load_tensors(tiny_ar, "test")


def fresh_attention(vocab_size: int, max_len: int, n_heads: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    config = ModelConfig(mixer="attention", d_model=16, n_layers=2, mixer_args={"n_heads": n_heads})
    return build_model(config, vocab_size, max_len)


def reference_table(model, tensors, from_names, to_names) -> pd.DataFrame:
    """The same table, one unpadded example at a time with plain Python indexing."""
    named = {**tensors.positions, PREDICTS_ANSWER: tensors.predicts_answer}
    excluded = set(tensors.positions) | set(to_names)
    rows = []
    with storing_attention(model, range(len(model.layers))):
        for ex in range(len(tensors)):
            length = int(tensors.lengths[ex])
            model(tensors.input_ids[ex: ex + 1, :length])
            pos = {k: int(v[ex]) for k, v in named.items()}
            for layer, block in enumerate(model.layers):
                probs = block.mixer.attention_probs[0]
                for head in range(probs.shape[0]):
                    for f in from_names:
                        row = probs[head, pos[f]] if 0 <= pos[f] < length else None
                        for t in to_names:
                            value = float(row[pos[t]]) if row is not None and 0 <= pos[t] < length else math.nan
                            rows.append((ex, layer, head, f, t, value))
                        skip = {pos[k] for k in excluded if 0 <= pos[k] < length}
                        other = (sum(float(row[j]) for j in range(length) if j not in skip)
                                 if row is not None else math.nan)
                        rows.append((ex, layer, head, f, OTHER, other))
    return pd.DataFrame(rows, columns=[*KEYS, "value"])


def test_stored_attention_matches_the_fused_path():
    torch.manual_seed(0)
    mixer = Attention(16, AttentionOptions(n_heads=4)).eval()
    x = torch.randn(3, 9, 16)
    with torch.no_grad():
        fused = mixer(x)
        mixer.store_attention = True
        stored = mixer(x)
    assert torch.allclose(fused, stored, atol=1e-6)
    probs = mixer.attention_probs
    assert probs.shape == (3, 4, 9, 9)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 4, 9), atol=1e-6)
    assert (probs.triu(1) == 0).all()  # causal: nothing after the query position


def test_whole_model_logits_do_not_change_while_storing(trained_attention, ar_test):
    model, _ = trained_attention
    ids = ar_test.input_ids[:32]
    with torch.no_grad():
        fused = model(ids)
        with storing_attention(model, [0, 1]):
            stored = model(ids)
            assert model.layers[1].mixer.attention_probs.shape == (32, 1, ids.shape[1], ids.shape[1])
    assert torch.allclose(fused, stored, atol=1e-6)
    assert all(not b.mixer.store_attention and b.mixer.attention_probs is None for b in model.layers)


def test_table_shape_masses_sum_to_one_and_causality(trained_attention, ar_test):
    model, _ = trained_attention
    table = attention_mass(model, ar_test)
    names = list(ar_test.positions)
    assert list(table.columns) == ["example", "query_type", "layer", "head", "from_position", "to_position", "value"]
    assert len(table) == len(ar_test) * 2 * 1 * len(names) * (len(names) + 1)
    assert set(table.from_position) == set(names)  # AR: query_item predicts the answer, no extra row
    assert set(table.to_position) == {*names, OTHER}
    assert table.value.notna().all() and (table.value >= 0).all()
    totals = table.groupby(["example", "layer", "head", "from_position"]).value.sum()
    assert np.allclose(totals, 1.0, atol=1e-5)
    # a to-position after the from-position gets exactly zero
    pos = torch.stack([ar_test.positions[k] for k in names], 1).numpy()  # [N, names]
    probes = table[table.to_position != OTHER]
    src = pos[probes.example, probes.from_position.map(names.index)]
    dst = pos[probes.example, probes.to_position.map(names.index)]
    future = dst > src
    assert future.any() and (probes.value.to_numpy()[future] == 0).all()
    assert (probes.value.to_numpy()[~future] > 0).all()  # softmax: everything visible gets some mass


def test_values_match_a_per_example_reference(trained_attention, ar_test):
    model, _ = trained_attention
    sub = ar_test.subset(torch.arange(12))
    table = attention_mass(model, sub, batch_size=5)
    ref = reference_table(model, sub, list(sub.positions), list(sub.positions))
    merged = table.merge(ref, on=KEYS, suffixes=("", "_ref"))
    assert len(merged) == len(table) == len(ref)
    assert np.allclose(merged.value, merged.value_ref, atol=1e-6)


def test_values_do_not_depend_on_batching_padding_or_order(trained_attention, ar_test):
    model, _ = trained_attention
    whole = attention_mass(model, ar_test, batch_size=len(ar_test)).set_index(KEYS).value
    assert ar_test.lengths.min() < ar_test.lengths.max()  # batches of 7 are padded differently
    small = attention_mass(model, ar_test, batch_size=7).set_index(KEYS).value
    order = torch.arange(len(ar_test) - 1, -1, -1)
    padded = dataclasses.replace(ar_test, input_ids=torch.nn.functional.pad(ar_test.input_ids, (0, 5)))
    reversed_ = attention_mass(model, padded.subset(order), batch_size=13)
    reversed_["example"] = order.numpy()[reversed_.example]
    reversed_ = reversed_.set_index(KEYS).value
    assert np.allclose(small.loc[whole.index], whole, atol=1e-6)
    assert np.allclose(reversed_.loc[whole.index], whole, atol=1e-6)


def test_position_selection_and_other(trained_attention, ar_test):
    model, _ = trained_attention
    table = attention_mass(model, ar_test, from_positions=["query_item"], to_positions=["target_item_orig"])
    assert set(table.from_position) == {"query_item"} and set(table.to_position) == {"target_item_orig", OTHER}
    full = attention_mass(model, ar_test).set_index(KEYS).value
    picked = table.set_index(KEYS).value
    # "other" stays the mass off every probe position, whatever subset is requested
    assert np.allclose(picked, full.loc[picked.index], atol=1e-7)
    with pytest.raises(ValueError, match="unknown to-positions"):
        attention_mass(model, ar_test, to_positions=["nowhere"])


def test_predicts_answer_is_added_when_no_probe_position_is_it():
    language = make_language(parse_language_config({
        "type": "atr", "num_terminals": 20, "num_nonterminals": 40, "max_rhs_len": 5, "max_rules_per_nt": 5,
        "max_depth": 10, "splits": {"train": 16}}))
    tensors = to_tensors(language.generate()["train"], mask_nonquery=True)
    assert len(language.query_type_ids) > 1  # a type token sits between query and answer
    model = fresh_attention(len(language.vocabulary()), tensors.input_ids.shape[1], n_heads=2).eval()
    table = attention_mass(model, tensors, batch_size=6)
    from_names = [*tensors.positions, PREDICTS_ANSWER]
    assert list(table.from_position.unique()) == from_names
    assert set(table["head"]) == {0, 1}
    ref = reference_table(model, tensors, from_names, list(tensors.positions))
    merged = table.merge(ref, on=KEYS, suffixes=("", "_ref"))
    assert len(merged) == len(table) and np.allclose(merged.value, merged.value_ref, atol=1e-6)
    # the type token is no probe position: from the answer-predicting position, it is in "other"
    at = table[table.from_position == PREDICTS_ANSWER].pivot_table(
        index=["example", "layer", "head"], columns="to_position", values="value")
    assert (at[OTHER] > 0).all()
    assert (at["target_item"] == 0).all()  # the answer itself is not visible yet


def test_model_state_is_restored_also_on_error(ar_test):
    model = fresh_attention(ar_test.input_ids.max().item() + 1, ar_test.input_ids.shape[1]).train()
    model.layers[1].mixer.store_attention = True  # a caller's own setting survives
    attention_mass(model, ar_test.subset(torch.arange(8)))
    assert model.training and [b.mixer.store_attention for b in model.layers] == [False, True]
    assert all(b.mixer.attention_probs is None for b in model.layers)
    broken = dataclasses.replace(ar_test, input_ids=ar_test.input_ids + 1000)  # ids beyond the vocabulary
    with pytest.raises(IndexError):
        attention_mass(model, broken)
    assert model.training and [b.mixer.store_attention for b in model.layers] == [False, True]
    assert all(b.mixer.attention_probs is None for b in model.layers)


def test_models_without_attention_are_refused(ar_test):
    mamba = build_model(ModelConfig(mixer="mamba", d_model=16, n_layers=1, mixer_args={"d_state": 4}), 32, 16)
    assert not has_attention(mamba)
    assert has_attention(fresh_attention(32, 16))
    with pytest.raises(ValueError, match="mamba"):
        attention_mass(mamba, ar_test)


def test_summary_statistics_keep_run_and_step():
    table = pd.DataFrame({
        "run": "r", "step": 10, "example": [0, 1, 2, 3, 0, 1, 2, 3], "query_type": "KEY", "layer": 1, "head": 0,
        "from_position": "query_item", "to_position": ["target_item_orig"] * 4 + [OTHER] * 4,
        "value": [0.9, 0.8, 0.7, math.nan, 0.1, 0.2, 0.3, 0.4],
    })
    summary = attention_summary(table)
    assert {"run", "step", "layer", "head", "from_position", "to_position", "statistic", "value"} == set(summary.columns)
    stats = summary.set_index(["to_position", "statistic"]).value
    assert stats["target_item_orig", "mean"] == pytest.approx(0.8)
    assert stats["target_item_orig", "q25"] == pytest.approx(0.75)
    assert stats["target_item_orig", "q75"] == pytest.approx(0.85)
    assert stats["target_item_orig", "n"] == 3  # NaN (an absent position) is skipped
    assert stats[OTHER, "mean"] == pytest.approx(0.25)
    assert "query_type" in attention_summary(table, by_query_type=True).columns


def mean_mass(model, tensors) -> pd.Series:
    summary = attention_summary(attention_mass(model, tensors))
    return summary[summary.statistic == "mean"].set_index(["layer", "from_position", "to_position"]).value


def test_trained_model_shows_the_induction_signature(trained_attention, untrained_attention, ar_test):
    """Observed (seed 0): last layer query_item → target_item_orig 0.94 trained vs 0.14 untrained;
    layer 0 target_item_orig → query_item_orig (the value's key, one token back) 0.87 vs 0.28."""
    model, _ = trained_attention
    trained, untrained = mean_mass(model, ar_test), mean_mass(untrained_attention, ar_test)
    induction = (1, "query_item", "target_item_orig")
    assert trained[induction] > 0.75
    assert trained[induction] - untrained[induction] > 0.5
    # the query reads the value, not the key it matched
    assert trained[1, "query_item", "query_item_orig"] < 0.1
    previous_token = (0, "target_item_orig", "query_item_orig")
    assert trained[previous_token] > 0.6
    assert trained[previous_token] - untrained[previous_token] > 0.3
