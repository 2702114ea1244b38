"""The report's landing page: the study's description followed by its summary as RST tables."""

from __future__ import annotations

import math

import pandas as pd

from tinylang.study.summary import SUMMARY_COLUMNS

QUANTITIES = {"accuracy": "accuracy (best lr)", "attrib@Key": "Attrib @Key", "attrib@Value": "Attrib @Value",
              "attrib@Query": "Attrib @Query"}


def summary_rst(description: str, runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    """``description`` (the workflow's RST), then a runs line and one table row per configuration."""
    failed = int((runs["status"] == "failed").sum()) if "status" in runs else 0
    axes = [f"{column} {', '.join(map(str, sorted(runs[column].unique())))}"
            for column in ("mixer", "d_model", "lr", "seed") if column in runs]
    lines = [description.rstrip(), "", "Summary", "-------", "",
             f"{len(runs)} runs ({failed} failed): {'; '.join(axes)}. Accuracy is the mean over seeds at the "
             "learning rate picked on the selection split (95 % interval); Attrib the median over the runs "
             "of every learning rate that the run filter keeps (n; –: none kept). The figures are in the "
             "menu's categories.", ""]
    config = [c for c in summary.columns if c not in SUMMARY_COLUMNS]
    fixed = {c: summary[c].iloc[0] for c in config if c != "mixer" and summary[c].nunique(dropna=False) == 1}
    config = [c for c in config if c not in fixed]  # the same in every row: said once, above the table
    header = [*config, *(label for q, label in QUANTITIES.items() if q in set(summary["quantity"]))]
    rows = [[*map(str, key), *(_cell(group, q) for q, label in QUANTITIES.items() if label in header)]
            for key, group in summary.groupby(config, sort=True, dropna=False)]
    shared = ", ".join(f"{c} {v}" for c, v in fixed.items())
    return "\n".join([*lines, *([f"Every row: {shared}.", ""] if shared else []), *_list_table(header, rows), ""])


def _cell(group: pd.DataFrame, quantity: str) -> str:
    row = group[group["quantity"] == quantity]
    if row.empty:
        return "–"
    if pd.isna(row["value"].iloc[0]):
        return "–"
    value, low, high, n = row[["value", "ci_low", "ci_high", "n"]].iloc[0]
    if quantity == "accuracy":
        interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
        return f"{value:.3f}{interval}"
    return f"{value:.2f} (n={int(n)})"


def _list_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    return lines


__all__ = ["summary_rst"]
