"""The normalised-restoration metric (attrib), per example and summarised, and the restoration
summary over (corrupted, layer, component, position)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tinylang.evaluation import attribution_summary, example_attributions
from tinylang.evaluation.restoration import STATISTICS, restoration_summary


def table(p_clean, p_corrupted, p_patched_by_position):
    """An intervention table with one example per entry of the lists, at layer 1 block_input."""
    rows = []
    for ex, (clean, corrupted) in enumerate(zip(p_clean, p_corrupted)):
        rows += [{"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": -1,
                  "component": "none", "position": "none", "metric": m, "value": v}
                 for m, v in (("p_clean", clean), ("p_corrupted", corrupted))]
        for position, patched in p_patched_by_position.items():
            rows.append({"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": 1,
                         "component": "block_input", "position": position, "metric": "p_patched",
                         "value": patched[ex]})
    return pd.DataFrame(rows)


def test_attrib_is_the_restored_share_and_excludes_unharmed_examples():
    df = table([0.9, 0.5, 0.4], [0.1, 0.5, 0.6], {"target_item_orig": [0.5, 0.7, 0.5]})
    attrib = example_attributions(df).set_index("example").attrib
    assert attrib[0] == pytest.approx(0.5)
    assert math.isnan(attrib[1]) and math.isnan(attrib[2])  # corruption did not lower p


def test_summary_reports_median_iqr_and_exclusions_per_readout():
    df = table([1.0] * 4 + [0.2], [0.0] * 4 + [0.3],
               {"query_item_orig": [0, 0, 0, 0, 0], "target_item_orig": [1.0, 0.9, 0.8, 0.7, 0.0],
                "query_item": [0.1, 0.0, 0.0, 0.0, 0.0]})
    summary = attribution_summary(df).pivot_table(index="readout", columns="statistic", values="value")
    assert summary.loc["@Value", "median"] == pytest.approx(0.85)
    assert summary.loc["@Value", "q25"] == pytest.approx(0.775)
    assert summary.loc["@Key", "median"] == 0 and summary.loc["@Query", "q75"] == pytest.approx(0.025)
    assert (summary["n"] == 4).all() and (summary["excluded"] == 1).all()


def patch_table(p_clean, p_corrupted, p_diff, kl=None, **extra):
    """A full intervention table: ``p_diff[layer][position]`` lists one value per example;
    ``p_patched = p_corrupted + p_diff`` and ``kl`` (same layout) as given."""
    rows = []
    for ex, (clean, corrupted) in enumerate(zip(p_clean, p_corrupted)):
        rows += [{"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": -1,
                  "component": "none", "position": "none", "metric": m, "value": v}
                 for m, v in (("p_clean", clean), ("p_corrupted", corrupted))]
        for layer, by_position in p_diff.items():
            for position, diffs in by_position.items():
                values = {"p_diff": diffs[ex], "p_patched": corrupted + diffs[ex]}
                if kl is not None:
                    values["kl_patched_corrupted"] = kl[layer][position][ex]
                rows += [{"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": layer,
                          "component": "block_input", "position": position, "metric": m, "value": v}
                         for m, v in values.items()]
    return pd.DataFrame(rows).assign(**extra)


def stats(summary):
    return summary.set_index(["layer", "position", "statistic"]).value


def test_restoration_summary_statistics():
    nan = float("nan")
    df = patch_table([0.9, 0.9, 0.5, 0.8], [0.1, 0.5, 0.5, 0.0],
                     {0: {"a": [0.4, 0.2, 0.1, 0.8], "b": [0.0, 0.4, 0.0, nan]}},
                     kl={0: {"a": [1.0, 2.0, 3.0, 6.0], "b": [0.0, 0.5, 0.0, nan]}})
    summary = restoration_summary(df)
    assert list(summary.columns) == ["corrupted", "layer", "component", "position", "statistic", "value"]
    s = stats(summary)
    assert s[0, "a", "p_diff_mean"] == pytest.approx(0.375) and s[0, "a", "p_diff_median"] == pytest.approx(0.3)
    assert s[0, "a", "kl_patched_corrupted_mean"] == pytest.approx(3.0)
    # attrib: 0.4/0.8, 0.2/0.4, excluded (no harm), 0.8/0.8
    assert s[0, "a", "attrib_mean"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s[0, "a", "attrib_median"] == pytest.approx(0.5)
    assert s[0, "a", "n"] == 4 and s[0, "a", "n_attrib"] == 3 and s[0, "b", "n_attrib"] == 2
    assert s[0, "b", "p_diff_mean"] == pytest.approx(0.4 / 3)  # NaN left out
    assert s[0, "b", "attrib_mean"] == pytest.approx((0.0 + 1.0) / 2)
    # largest p_diff per example: a, b, a, a (b is NaN there)
    assert s[0, "a", "share_max_position"] == pytest.approx(3 / 4)
    assert s[0, "b", "share_max_position"] == pytest.approx(1 / 4)
    assert s[0, "a", "share_max_layer"] == 1.0 and s[0, "b", "share_max_layer"] == 1.0  # one layer
    assert set(summary.statistic) == set(STATISTICS)


def test_restoration_summary_shares_ties_and_skips_examples_without_values():
    nan = float("nan")
    df = patch_table([1.0] * 4, [0.0] * 4, {
        0: {"a": [0.5, 0.2, 0.0, nan], "b": [0.1, 0.2, 0.3, nan], "c": [0.0, 0.0, nan, nan]},
        1: {"a": [0.6, 0.2, 0.0, 0.1], "b": [0.1, 0.1, 0.3, 0.1], "c": [0.0, 0.3, 0.3, 0.1]},
    })
    s = stats(restoration_summary(df))  # no KL rows: no KL statistic
    assert "kl_patched_corrupted_mean" not in set(s.index.get_level_values("statistic"))
    # Layer 0: example 1 ties a and b (1/2 each); example 3 has no finite p_diff and is not counted.
    assert [s[0, p, "share_max_position"] for p in "abc"] == pytest.approx([1.5 / 3, 1.5 / 3, 0.0])
    # Layer 1: ex 0 -> a; ex 1 -> c; ex 2 ties b, c; ex 3 ties a, b, c.
    assert [s[1, p, "share_max_position"] for p in "abc"] == pytest.approx(
        [(1 + 1 / 3) / 4, (0.5 + 1 / 3) / 4, (1 + 0.5 + 1 / 3) / 4])
    # Over layers at position a: 0.5<0.6, tie 0.2, tie 0.0, NaN<0.1 -> layer 0 gets 1/2 + 1/2 of 4.
    assert s[0, "a", "share_max_layer"] == pytest.approx(1 / 4) and s[1, "a", "share_max_layer"] == pytest.approx(3 / 4)
    # Position c: a tie (0.0, 0.0), then layer 1 (0.3 > 0.0; 0.3, 0.1 against NaN).
    assert s[0, "c", "share_max_layer"] == pytest.approx(0.5 / 4) and s[1, "c", "share_max_layer"] == pytest.approx(3.5 / 4)
    for over in ("position", "layer"):
        level = "layer" if over == "position" else "position"
        totals = s.xs(f"share_max_{over}", level="statistic").groupby(level=level).sum()
        assert totals.to_numpy() == pytest.approx(1.0)


def test_restoration_summary_keeps_runs_and_steps_apart():
    one = patch_table([1.0, 1.0], [0.0, 0.0], {0: {"a": [0.2, 0.4], "b": [0.3, 0.1]}}, run="x", step=5)
    two = patch_table([1.0, 1.0], [0.0, 0.0], {0: {"a": [0.9, 0.9], "b": [0.0, 0.0]}}, run="y", step=7)
    summary = restoration_summary(pd.concat([one, two], ignore_index=True))
    assert list(summary.columns[:2]) == ["run", "step"]
    s = summary.set_index(["run", "step", "position", "statistic"]).value
    assert s["x", 5, "a", "p_diff_mean"] == pytest.approx(0.3) and s["y", 7, "a", "p_diff_mean"] == pytest.approx(0.9)
    assert s["x", 5, "a", "share_max_position"] == 0.5 and s["y", 7, "a", "share_max_position"] == 1.0
