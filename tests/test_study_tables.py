"""Study aggregation: best learning rate on the selection split, seed intervals, mechanism rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from tinylang.figures.study_tables import run_table, select_best, seed_interval, selection_splits


def coords(mixer, lr, seed, language="ar"):
    return {"run": f"{language}-{mixer}-lr{lr}-s{seed}", "language": language, "mixer": mixer, "d_model": 16,
            "n_layers": 1, "pos_embed": False, "lr": lr, "seed": seed}


# accuracy[(mixer, lr, seed)] = (dev, test)
ACCURACY = {
    ("attention", 0.001, 0): (0.50, 0.40), ("attention", 0.001, 1): (0.70, 0.60),
    ("attention", 0.01, 0): (0.90, 0.80), ("attention", 0.01, 1): (0.80, 0.90),
    ("mamba", 0.001, 0): (0.60, 0.65), ("mamba", 0.001, 1): (0.60, 0.55),
    ("mamba", 0.01, 0): (0.60, 0.10), ("mamba", 0.01, 1): (0.60, 0.20),  # a tie on dev: the smaller lr wins
}


def run_accuracy():
    rows = []
    for (mixer, lr, seed), (dev, test) in ACCURACY.items():
        for split, value in (("dev", dev), ("test", test)):
            rows.append({**coords(mixer, lr, seed), "step": 100, "split": split, "metric": "accuracy", "value": value})
    return pd.DataFrame(rows)


def test_best_learning_rate_is_picked_on_dev_and_reported_on_test():
    selection, table = select_best(run_accuracy(), selection_splits({"ar": ["train", "dev", "test"]}))
    by_mixer = selection.set_index("mixer")
    assert by_mixer.loc["attention", "lr"] == 0.01 and by_mixer.loc["mamba", "lr"] == 0.001
    assert by_mixer.loc["attention", "select_mean"] == pytest.approx(0.85)
    assert by_mixer.loc["attention", "mean"] == pytest.approx(0.85)
    assert by_mixer.loc["mamba", "mean"] == pytest.approx(0.60)
    half = stats.t.ppf(0.975, 1) * pd.Series([0.80, 0.90]).std() / math.sqrt(2)
    assert by_mixer.loc["attention", "ci_low"] == pytest.approx(0.85 - half)
    assert by_mixer.loc["attention", "ci_high"] == pytest.approx(0.85 + half)
    assert (selection.select_split == "dev").all() and (selection.report_split == "test").all()
    assert (selection.n_seeds == 2).all()
    assert set(table.loc[table.selected, "run"]) == {
        "ar-attention-lr0.01-s0", "ar-attention-lr0.01-s1", "ar-mamba-lr0.001-s0", "ar-mamba-lr0.001-s1"}


def test_without_a_dev_split_the_test_split_selects_and_reports():
    table = run_accuracy()
    table = table[table.split == "test"]
    selection, _ = select_best(table, selection_splits({"ar": ["train", "test"]}))
    assert (selection.select_split == "test").all()
    assert selection.set_index("mixer").loc["mamba", "lr"] == 0.001  # 0.60 vs 0.15 on test


def test_one_seed_has_no_interval():
    row = seed_interval(pd.Series([0.5]))
    assert row["mean"] == 0.5 and math.isnan(row["ci_low"]) and row["n_seeds"] == 1


def test_run_table_needs_runs():
    with pytest.raises(ValueError, match="no runs"):
        run_table([])
