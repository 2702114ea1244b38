"""The report's summary: best-lr accuracy per configuration and the median Attrib of kept runs."""

from __future__ import annotations

import pandas as pd
import pytest

from tinylang.figures.summary import summary_rst
from tinylang.study.summary import summary_table

RUNS = pd.DataFrame({"run": ["a1", "a2", "m1"], "language": "ar", "mixer": ["attention", "attention", "mamba"],
                     "d_model": 16, "lr": [1e-3, 3e-3, 1e-3], "seed": 0, "status": ["ok", "ok", "failed"]})
SELECTION = pd.DataFrame({"language": "ar", "mixer": ["attention", "mamba"], "d_model": 16, "metric": "accuracy",
                          "lr": [3e-3, 1e-3], "mean": [0.9, float("nan")], "ci_low": [0.8, float("nan")],
                          "ci_high": [1.0, float("nan")], "n_seeds": [2, 0]})
CURVES = pd.DataFrame({
    "run": ["a1", "a1", "a2", "a1", "m1"], "language": "ar",
    "mixer": ["attention", "attention", "attention", "attention", "mamba"], "d_model": 16,
    "lr": [1e-3, 1e-3, 3e-3, 1e-3, 1e-3], "seed": 0, "step": [5, 10, 10, 10, 10],
    "quantity": ["attrib@Value", "attrib@Value", "attrib@Value", "accuracy", "attrib@Value"],
    "value": [0.0, 0.6, 1.0, 0.9, float("nan")]})


def test_the_summary_takes_the_selected_accuracy_and_the_median_attrib_of_kept_runs_at_their_last_step():
    table = summary_table(RUNS, SELECTION, CURVES).set_index(["mixer", "quantity"])
    assert table.loc[("attention", "accuracy"), ["value", "ci_low", "ci_high", "n"]].tolist() == [0.9, 0.8, 1.0, 2]
    assert table.loc[("attention", "attrib@Value"), "value"] == pytest.approx(0.8)  # median of 0.6 and 1.0
    assert table.loc[("attention", "attrib@Value"), "n"] == 2
    assert pd.isna(table.loc[("mamba", "attrib@Value"), "value"]) and table.loc[("mamba", "attrib@Value"), "n"] == 0


def test_the_page_is_the_description_then_one_row_per_configuration():
    page = summary_rst("Study **x**.", RUNS, summary_table(RUNS, SELECTION, CURVES))
    assert page.startswith("Study **x**.\n\nSummary\n-------\n\n3 runs (1 failed): mixer attention, mamba;")
    assert "Every row: language ar, d_model 16." in page
    rows = page.split(".. list-table::")[1].split("   * - ")[1:]
    assert [row.split("\n")[0] for row in rows] == ["mixer", "attention", "mamba"]
    assert "- 0.900 [0.80, 1.00]" in rows[1] and "- 0.80 (n=2)" in rows[1]
    assert rows[2].split("\n     - ")[1:] == ["–", "–\n"]
