"""Study aggregation: best learning rate on the selection split, seed intervals, mechanism rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hand_made import (
    HAND_ATTRIB,
    HAND_EXAMPLE_MEDIAN,
    HAND_GAP,
    HAND_LAYER_ATTRIB,
    hand_study_tables,
    two_split_interventions,
)
from scipy import stats

from tinylang.study import build_study_tables
from tinylang.study.runs import run_statuses, run_table
from tinylang.study.selection import seed_interval, select_best, selection_splits


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


def behaviour_table(skip=(), early=()):
    """Behaviour rows as the evaluate stage writes them: the final step (100) of every run not in
    ``skip``, and an earlier step (50) of the runs in ``early``."""
    rows = []
    for (mixer, lr, seed), (dev, test) in ACCURACY.items():
        run = coords(mixer, lr, seed)["run"]
        steps = ([50] if run in early else []) + ([] if run in skip else [100])
        for step in steps:
            for split, value in (("dev", dev), ("test", test)):
                rows.append({"run": run, "step": step, "split": split, "query_type": "ALL", "metric": "accuracy",
                             "value": value, "n": 32})
    return pd.DataFrame(rows)


def study_tables(tmp_path, behaviour, statuses=None):
    path = tmp_path / "behaviour.parquet"
    behaviour.to_parquet(path)
    runs = [coords(mixer, lr, seed) for mixer, lr, seed in ACCURACY]
    return build_study_tables(runs, {"ar": ["train", "dev", "test"]}, [path], (), statuses)


FAILED = "ar-attention-lr0.01-s1"


def test_a_failed_run_is_reported_kept_with_nan_and_its_learning_rate_never_selected(tmp_path):
    baseline = study_tables(tmp_path, behaviour_table())
    assert (baseline["runs"]["status"] == "ok").all() and baseline["runs"]["failed_step"].isna().all()

    statuses = [{"run": coords(m, lr, s)["run"], "status": "ok"} for m, lr, s in ACCURACY if coords(m, lr, s)["run"] != FAILED]
    statuses.append({"run": FAILED, "status": "failed", "step": 73, "lr": 0.0095, "reason": "loss is nan"})
    # The failed run's step-50 table exists; its step-100 table is empty.
    tables = study_tables(tmp_path, behaviour_table(skip={FAILED}, early={FAILED}), statuses)

    runs = tables["runs"].set_index("run")
    assert runs.loc[FAILED, "status"] == "failed" and runs.loc[FAILED, "failed_step"] == 73
    assert runs.loc[FAILED, "failed_lr"] == 0.0095 and runs.loc[FAILED, "failure"] == "loss is nan"
    assert (runs.drop(FAILED)["status"] == "ok").all() and runs.drop(FAILED)["failed_step"].isna().all()

    accuracy = tables["run_accuracy"]
    failed_rows = accuracy[accuracy.run == FAILED]
    assert sorted(failed_rows.split) == ["dev", "test"] and failed_rows.value.isna().all()
    assert failed_rows.step.isna().all() and not failed_rows.selected.any()
    others = accuracy[accuracy.run != FAILED].reset_index(drop=True)
    expected = baseline["run_accuracy"][baseline["run_accuracy"].run != FAILED].reset_index(drop=True)
    pd.testing.assert_frame_equal(others.drop(columns=["step", "selected"]), expected.drop(columns=["step", "selected"]))

    # attention: lr 0.01 (best on dev) had a failed seed, so 0.001 is chosen; mamba is unchanged.
    selection = tables["selection"].set_index("mixer")
    assert selection.loc["attention", "lr"] == 0.001 and selection.loc["attention", "mean"] == pytest.approx(0.5)
    assert set(accuracy.loc[accuracy.selected & (accuracy.mixer == "attention"), "run"]) == {
        "ar-attention-lr0.001-s0", "ar-attention-lr0.001-s1"}
    pd.testing.assert_frame_equal(tables["selection"][tables["selection"].mixer == "mamba"].reset_index(drop=True),
                                  baseline["selection"][baseline["selection"].mixer == "mamba"].reset_index(drop=True))
    # The curves keep the failed run's evaluated step.
    curves = tables["curves"]
    assert curves.loc[curves.run == FAILED, "step"].tolist() == [50]


def test_status_files_are_read_and_every_run_needs_one(tmp_path):
    import json

    path = tmp_path / "runs" / FAILED / "status.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"status": "failed", "step": 7, "lr": 1.0, "reason": "loss is inf"}))
    assert run_statuses([path]) == {FAILED: {"run": FAILED, "status": "failed", "step": 7, "lr": 1.0,
                                             "reason": "loss is inf"}}
    with pytest.raises(ValueError, match="no status for run"):
        study_tables(tmp_path, behaviour_table(skip={FAILED}), [path])


# --- the mechanism tables: the paper's Attrib and the run filter -----------------------------

def test_mechanism_table_carries_the_papers_attrib_by_hand_and_the_run_filter(tmp_path):

    tables = hand_study_tables(tmp_path)
    mechanism = tables["mechanism"]
    assert set(mechanism.run) == {"over", "hurts", "flat"}  # the failed run has no mechanism rows
    assert set(mechanism.component) == {"block_input", "mixer_output"} and set(mechanism.layer) == {0, 1}
    headline = mechanism[(mechanism.component == "block_input") & (mechanism.corrupted == "query_item_orig")
                         & (mechanism.layer == 1) & (mechanism.readout == "@Value")].set_index("run")
    for run, value in HAND_ATTRIB.items():
        assert headline.loc[run, "attrib"] == pytest.approx(value, rel=1e-4)
        assert headline.loc[run, "gap"] == pytest.approx(HAND_GAP[run], abs=1e-6)
    for run, median in HAND_EXAMPLE_MEDIAN.items():
        assert headline.loc[run, "attrib_example_median"] == pytest.approx(median, rel=1e-4)
    assert headline.loc["over", "attrib"] > 1 and headline.loc["hurts", "attrib"] < 0
    assert headline["kept"].to_dict() == {"over": True, "hurts": True, "flat": False}
    # The best learning rate is still flagged, for the accuracy figures: "hurts" is kept, not selected.
    assert headline["selected"].to_dict() == {"over": True, "hurts": False, "flat": True}
    layers = mechanism[(mechanism.component == "mixer_output") & (mechanism.readout == "@Query")]
    layers = layers.set_index(["run", "layer"])["attrib"]
    for key, value in HAND_LAYER_ATTRIB.items():
        assert layers[key] == pytest.approx(value, rel=1e-4, abs=1e-6)

    dropped = tables["dropped_runs"].set_index("run")
    assert sorted(dropped.index) == ["broken", "flat"]
    assert dropped.loc["flat", "reason"] == "gap <= min_gap" and dropped.loc["flat", "step"] == 100
    assert dropped.loc["flat", "gap"] == pytest.approx(HAND_GAP["flat"], abs=1e-6)
    assert dropped.loc["flat", "min_gap"] == 0.01 and dropped.loc["flat", "mixer"] == "mamba"
    assert dropped.loc["broken", "reason"] == "failed: loss is nan" and pd.isna(dropped.loc["broken", "step"])

    curves = tables["curves"].set_index(["run", "quantity"])["value"]
    assert curves["over", "attrib@Value"] == pytest.approx(HAND_ATTRIB["over"], rel=1e-4)
    assert math.isnan(curves["flat", "attrib@Value"])  # dropped at that step


def test_the_gap_threshold_is_an_option(tmp_path):
    tables = hand_study_tables(tmp_path, min_gap=0.2)  # "hurts" has a gap of 0.1425
    assert sorted(tables["dropped_runs"].run) == ["broken", "flat", "hurts"]
    assert (tables["dropped_runs"].min_gap == 0.2).all()
    mechanism = tables["mechanism"]
    assert not mechanism.loc[mechanism.run == "hurts", "kept"].any()


def test_a_run_evaluated_on_dev_and_test_has_the_attrib_of_each_and_is_dropped_per_split(tmp_path):

    runs = [{"run": "x", "language": "gen", "mixer": "mamba", "d_model": 16, "n_layers": 2, "pos_embed": False,
             "lr": 0.001, "seed": 0}]
    behaviour = pd.DataFrame([{"run": "x", "step": 100, "split": split, "query_type": "ALL", "metric": "accuracy",
                               "value": 0.5, "n": 4} for split in ("dev", "test")])
    behaviour.to_parquet(tmp_path / "behaviour.parquet")
    two_split_interventions(dev="over", test="flat").to_parquet(tmp_path / "interventions.parquet")
    tables = build_study_tables(runs, {"gen": ["train", "dev", "test"]}, [tmp_path / "behaviour.parquet"],
                                [tmp_path / "interventions.parquet"])
    mechanism = tables["mechanism"]
    headline = mechanism[(mechanism.component == "block_input") & (mechanism.layer == 1)
                         & (mechanism.readout == "@Value")].set_index("split")
    assert headline["attrib"]["dev"] == pytest.approx(HAND_ATTRIB["over"], rel=1e-4)
    assert headline["attrib"]["test"] == pytest.approx(HAND_ATTRIB["flat"], rel=1e-4)
    assert headline["kept"].to_dict() == {"dev": True, "test": False}
    dropped = tables["dropped_runs"]
    assert dropped[["run", "split", "reason"]].values.tolist() == [["x", "test", "gap <= min_gap"]]
    curves = tables["curves"].set_index("quantity")["value"]
    assert math.isnan(curves["attrib@Value"])  # the report split, test, where the run is dropped
