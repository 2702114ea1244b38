"""Linear probes and the activation collector they read from.

Numbers seen when these tests were written (``tiny_ar``, ``target_item`` probed at ``query_item``,
``block_output``, held-out accuracy):

* trained model, test split (100 / 100): layer 0 0.26, layer 1 1.00; naive chance 0.19.
* untrained model, first 1000 train examples (500 / 500): layer 0 0.33, layer 1 0.39; naive
  chance 0.14; a probe on the bag of tokens seen so far 0.43; guessing uniformly among the
  example's values would score E[1 / n_pairs] = 0.41.

So the untrained model beats the naive (majority-label) chance: at ``query_item`` its residual
stream mixes the whole context, which tells the probe which 2–3 values are present, but not
which of them belongs to the queried key. The honest control is therefore a probe on the bag
of context tokens (it knows the set of values, not the pairing); the untrained model does not
beat it, the trained model does by a wide margin.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tinylang.evaluation.activations import collect
from tinylang.evaluation.probes import (
    COLUMNS,
    PROBE_METRICS,
    fit_probes,
    run_probes,
    split_mask,
)
from tinylang.languages import load_tensors
from tinylang.models import build_model


def prefix_bag(tensors, position: str, vocab_size: int) -> torch.Tensor:
    """``(N, vocab)`` counts of each token id at positions ≤ ``position``: all a model could know
    that mixes its causal context as an unordered bag (which tokens occurred, not their pairing)."""
    ids = tensors.input_ids
    seen = torch.arange(ids.shape[1])[None] <= tensors.positions[position][:, None]
    return torch.zeros(len(ids), vocab_size).scatter_add_(1, ids, seen.float())


def accuracy(table: pd.DataFrame, metric: str = "accuracy", **where) -> float:
    rows = table[table.metric == metric]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows.value.item()


# --- fit_probes on synthetic features ---------------------------------------------------------


def planted(n: int = 400, d: int = 16, classes: int = 5, noise: float = 1.0, seed: int = 0):
    """Features with a linear signal for ``labels`` (class means far apart) plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g) + 10  # ids need not start at 0
    means = 3 * torch.randn(classes, d, generator=g)
    return means[labels - 10] + noise * torch.randn(n, d, generator=g), labels


def test_probe_recovers_a_planted_signal_and_not_noise():
    features, labels = planted()
    train = split_mask(len(labels), 0.5, seed=0)
    signal = fit_probes(features, labels, train)
    assert signal["accuracy"] > 0.95 and signal["train_accuracy"] > 0.95

    g = torch.Generator().manual_seed(1)
    noise = torch.randn(features.shape, generator=g)
    shuffled = labels[torch.randperm(len(labels), generator=g)]
    for feats, labs in [(noise, labels), (features, shuffled)]:
        scores = fit_probes(feats, labs, train)
        # 200 test examples, 5 classes: chance ≈ 0.2–0.25, sd of the accuracy ≈ 0.03.
        assert scores["accuracy"] < scores["chance"] + 0.1
        assert scores["train_accuracy"] > scores["accuracy"]  # it does fit the training noise


def test_joint_fit_equals_separate_fits_and_unseen_test_labels_count_as_wrong():
    a, labels_a = planted(seed=0)
    b, labels_b = planted(seed=1, noise=4.0)  # a harder problem, fitted alongside
    features, labels = torch.stack([a, b]), torch.stack([labels_a, labels_b])
    train = split_mask(len(labels_a), 0.5, seed=3)
    joint = fit_probes(features, labels, train)
    assert joint["accuracy"].shape == (2, 2)
    for p in range(2):
        for t in range(2):
            alone = fit_probes(features[p], labels[t], train)
            for metric in PROBE_METRICS:
                assert joint[metric][p, t] == pytest.approx(alone[metric], abs=0.011)  # ≤ 2 of 200 flip

    # A class that never occurs in training cannot be predicted: those test examples are wrong.
    relabelled = labels_a.clone()
    test_rows = (~train).nonzero().squeeze(1)
    relabelled[test_rows[:50]] = 99
    base = fit_probes(a, labels_a, train)["accuracy"]
    scores = fit_probes(a, relabelled, train)
    assert scores["accuracy"] <= 1 - 50 / len(test_rows) + 1e-9
    assert scores["accuracy"] == pytest.approx(base - 50 / len(test_rows), abs=0.02)


def test_constant_features_give_the_majority_class():
    labels = torch.tensor([3] * 70 + [4] * 30)
    train = split_mask(100, 0.5, seed=0)
    scores = fit_probes(torch.ones(100, 8) * 5.0, labels, train)
    majority_rate = (labels[~train] == 3).float().mean().item()
    assert scores["accuracy"] == pytest.approx(majority_rate)
    assert scores["chance"] == pytest.approx(max(majority_rate, 1 - majority_rate))


# --- collect -----------------------------------------------------------------------------------


def test_collect_matches_the_forward_pass(tiny_ar, untrained_attention):
    shared = untrained_attention
    torch.manual_seed(1)
    model = build_model(shared.model_config, shared.config.vocab_size, shared.config.max_len)
    tensors = load_tensors(tiny_ar, "test").subset(torch.arange(40))
    positions = ["bos", "query_item", "target_item"]
    points = [(0, "block_input"), (1, "block_output"), (1, "mixer_output")]
    assert model.training  # collect must switch to eval and back
    acts = collect(model, tensors, points, positions, batch_size=16)
    assert model.training
    model.eval()
    assert set(acts) == set(points)
    assert all(a.shape == (3, 40, 32) and a.dtype == torch.float32 for a in acts.values())

    rows = torch.arange(40)
    pos = torch.stack([tensors.positions[p] for p in positions])
    with torch.no_grad():
        embedded = model.embed(tensors.input_ids) + model.pos_embed.weight[: tensors.input_ids.shape[1]]
        hidden = model.hidden_states(tensors.input_ids)
        torch.testing.assert_close(acts[(0, "block_input")], embedded[rows[None], pos])
        torch.testing.assert_close(model.norm_f(acts[(1, "block_output")]), hidden[rows[None], pos])
    one_batch = collect(model, tensors, points, positions, batch_size=64)
    for point in points:
        torch.testing.assert_close(one_batch[point], acts[point])


# --- run_probes --------------------------------------------------------------------------------


def test_run_probes_table_split_and_determinism(tiny_ar, untrained_attention):
    tensors = load_tensors(tiny_ar, "test")  # 200 examples
    kwargs = {"positions": ["divider", "query_item"], "components": ("block_output",), "layers": [1]}
    table = run_probes(untrained_attention, tensors, **kwargs)
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 2 * len(PROBE_METRICS)  # positions × targets (one layer, one component)
    assert set(table.metric) == set(PROBE_METRICS) and set(table.layer) == {1}
    assert (table.n_train == 100).all() and (table.n_test == 100).all()
    assert table.value.between(0, 1).all()
    pd.testing.assert_frame_equal(table, run_probes(untrained_attention, tensors, **kwargs))

    # Another seed, another split (and so other numbers); sizes follow floor(n · train_fraction).
    assert not torch.equal(split_mask(200, 0.5, 0), split_mask(200, 0.5, 1))
    assert torch.equal(split_mask(200, 0.5, 7), split_mask(200, 0.5, 7))
    assert int(split_mask(201, 0.5, 0).sum()) == 100
    assert int(split_mask(200, 0.25, 0).sum()) == 50
    with pytest.raises(ValueError, match="empty"):
        split_mask(10, 0.01)


def test_untrained_model_is_no_better_than_a_bag_of_context_tokens(tiny_ar, untrained_attention):
    model = untrained_attention
    tensors = load_tensors(tiny_ar, "train").subset(torch.arange(1000))  # 500 / 500: sd ≈ 0.02
    table = run_probes(model, tensors, targets=("target_item",), positions=("query_item_orig", "query_item"))
    train = split_mask(len(tensors), 0.5, seed=0)
    answer = tensors.input_ids[torch.arange(len(tensors)), tensors.positions["target_item"]]
    bag = fit_probes(prefix_bag(tensors, "query_item", model.config.vocab_size), answer, train)["accuracy"]
    n_pairs = (tensors.positions["divider"] - 1) / 2
    set_guess = (1 / n_pairs).mean().item()  # guessing uniformly among the example's values
    assert bag == pytest.approx(set_guess, abs=0.06)  # the bag knows the set, not the pairing

    for layer in range(model.config.n_layers):
        at_query = accuracy(table, layer=layer, position="query_item")
        # Above naive chance (it knows which values are present), but not above what the set of
        # context tokens alone allows. Tolerance 0.1 ≈ 3 sd of a difference of two accuracies.
        assert at_query < bag + 0.1
        # Just before the value appears, the probe can at best exclude the earlier pairs' values.
        before = accuracy(table, layer=layer, position="query_item_orig")
        assert before < accuracy(table, "chance", layer=layer, position="query_item_orig") + 0.08


def test_trained_model_has_the_answer_at_the_query_position(tiny_ar, trained_attention, untrained_attention):
    model, _ = trained_attention
    tensors = load_tensors(tiny_ar, "test")
    last = model.config.n_layers - 1
    kwargs = {"targets": ("target_item",), "positions": ("query_item", "target_item_orig"),
              "components": ("block_input", "block_output")}
    trained = run_probes(model, tensors, **kwargs)
    untrained = run_probes(untrained_attention, tensors, **kwargs)

    where = {"layer": last, "component": "block_output", "position": "query_item"}
    assert accuracy(trained, **where) > 0.9  # 1.00 when written
    assert accuracy(trained, **where) > accuracy(untrained, **where) + 0.4
    assert accuracy(trained, **where) > accuracy(trained, "chance", **where) + 0.5
    # Sanity: the value's own position holds its embedding, trivially decodable in any model.
    for table in (trained, untrained):
        assert accuracy(table, layer=0, component="block_input", position="target_item_orig") > 0.95
    assert trained[trained.metric == "chance"].value.nunique() == 1  # one test split, one target
