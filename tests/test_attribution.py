"""The normalised-restoration metric (attrib), per example and summarised."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tinylang.evaluation import attribution_summary, example_attributions


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
