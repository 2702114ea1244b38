"""The study at a glance: per configuration, the best learning rate's accuracy and the headline
Attrib of its kept runs (what the report's landing page shows)."""

from __future__ import annotations

import pandas as pd

from tinylang.study.runs import STATUS_COLUMNS, configuration_columns

SUMMARY_COLUMNS = ["quantity", "value", "ci_low", "ci_high", "n"]


def summary_table(runs: pd.DataFrame, selection: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Long table: configuration columns + ``quantity, value, ci_low, ci_high, n``. ``accuracy``
    is the selection table's mean over seeds at the best learning rate (its interval, its seeds);
    ``attrib@Key|Value|Query`` the median headline Attrib at each run's last evaluated step over
    the runs of every learning rate that the run filter keeps (``n`` of them), as the mechanism
    figures draw them."""
    config = configuration_columns(runs.drop(columns=list(STATUS_COLUMNS), errors="ignore"))
    accuracy = selection.assign(quantity="accuracy", value=selection["mean"], n=selection["n_seeds"])
    attrib = curves[curves["quantity"].str.startswith("attrib")]
    last = attrib[attrib["step"] == attrib.groupby("run")["step"].transform("max")]
    mechanism = (last.groupby([*config, "quantity"], dropna=False)["value"].agg(["median", "count"])
                 .reset_index().rename(columns={"median": "value", "count": "n"}))  # NaN, n 0: none kept
    table = pd.concat([accuracy[[*config, *SUMMARY_COLUMNS]], mechanism.assign(ci_low=float("nan"),
                                                                                ci_high=float("nan"))],
                      ignore_index=True)
    return table.sort_values([*config, "quantity"], ignore_index=True)[[*config, *SUMMARY_COLUMNS]]


__all__ = ["SUMMARY_COLUMNS", "summary_table"]
