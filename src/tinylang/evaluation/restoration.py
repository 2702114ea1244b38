"""Aggregate an intervention table: how much, and where, patching restores the clean answer.

``restoration_summary`` turns the per-example long table of ``run_interventions`` (optionally
with ``run``/``step`` columns, e.g. several tables concatenated) into one tidy row per
(corrupted, layer, component, position) and statistic. It needs no pyvene.
"""

from __future__ import annotations

import pandas as pd

from .attribution import attributions, example_attributions, table_keys

STATISTICS = ("p_diff_mean", "p_diff_median", "kl_patched_corrupted_mean", "attrib", "gap", "attrib_example_mean",
              "attrib_example_median", "share_max_position", "share_max_layer", "n", "n_attrib")


def _share_of_max(per_example: pd.DataFrame, over: str, keys: list[str]) -> pd.Series:
    """For each value of ``over`` within every (``keys`` without ``over``, example): the share of
    examples whose largest ``p_diff`` is at that value, indexed by ``keys``.

    Ties (exactly equal largest ``p_diff``) split the example: each of the k tied values gets
    1/k, so the shares over ``over`` sum to 1. NaN ``p_diff`` is never the largest; an example
    without any finite ``p_diff`` in its group counts for no value and not in the denominator.
    """
    within = [k for k in keys if k != over] + ["example"]
    value = per_example["p_diff"]
    largest = value.groupby([per_example[c] for c in within], sort=False, dropna=False).transform("max")
    is_max = (value == largest).astype(float)  # NaN == x is False
    ties = is_max.groupby([per_example[c] for c in within], sort=False, dropna=False).transform("sum")
    credit = (is_max / ties.where(ties > 0)).fillna(0.0)
    by_key = credit.groupby([per_example[c] for c in keys], sort=False, dropna=False).sum()
    total = credit.groupby([per_example[c] for c in keys if c != over], sort=False, dropna=False).sum()
    denominator = total.reindex(by_key.index.droplevel(over)).to_numpy()
    return by_key / pd.Series(denominator, index=by_key.index).where(lambda s: s > 0)


def restoration_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (``run``, ``step`` where present,) corrupted, layer, component, position: how much
    patching there restores, summarised over examples.

    Tidy long output: columns ``[run, step,] corrupted, layer, component, position,
    statistic, value`` with statistics

    * ``p_diff_mean``, ``p_diff_median``: of ``p_patched - p_corrupted``;
    * ``kl_patched_corrupted_mean``: mean ``KL(P_patched ‖ P_corrupted)`` (only if the table
      has that metric);
    * ``attrib``: the paper's Attrib, ``mean(p_patched - p_corrupted) / gap`` with ``gap = mean
      p_clean - mean p_corrupted`` (a ratio of means, see ``attributions``), and ``gap``;
    * ``attrib_example_mean``, ``attrib_example_median``: of the per-example ratio (see
      ``example_attributions``; examples the corruption did not harm are left out);
    * ``share_max_position``: the share of examples for which this position restores the most
      (largest ``p_diff``) among the table's positions at this (corrupted, layer, component);
    * ``share_max_layer``: the share of examples for which this layer restores the most among
      the layers at this (corrupted, component, position);
    * ``n``: examples; ``n_attrib``: examples with a defined per-example ratio.

    Ties for the largest ``p_diff`` (exact equality, e.g. positions after the answer-predicting
    one, which all give exactly 0) are shared: each of k tied positions (layers) gets 1/k of
    that example, so shares sum to 1 over positions (layers). NaN ``p_diff`` (e.g. the
    ``random`` position of an example that has none) never counts as the largest and such
    values are left out of the means and medians.
    """
    keys = table_keys(table)
    group = [*keys, "corrupted", "layer", "component", "position"]
    ident = [*group, "example"]
    per_example = example_attributions(table)[[*ident, "attrib"]]
    for metric in ("p_diff", "kl_patched_corrupted"):
        rows = table.loc[table["metric"] == metric, [*ident, "value"]].rename(columns={"value": metric})
        if len(rows):
            per_example = per_example.merge(rows, on=ident, how="left")
    if "p_diff" not in per_example:
        raise ValueError("the table has no p_diff rows; is it a run_interventions table?")

    grouped = per_example.groupby(group, sort=False, dropna=False)
    ratio = attributions(table).set_index(group)
    stats = {
        "p_diff_mean": grouped["p_diff"].mean(),
        "p_diff_median": grouped["p_diff"].median(),
        **({"kl_patched_corrupted_mean": grouped["kl_patched_corrupted"].mean()}
           if "kl_patched_corrupted" in per_example else {}),
        "attrib": ratio["attrib"],
        "gap": ratio["gap"],
        "attrib_example_mean": grouped["attrib"].mean(),
        "attrib_example_median": grouped["attrib"].median(),
        "share_max_position": _share_of_max(per_example, "position", group),
        "share_max_layer": _share_of_max(per_example, "layer", group),
        "n": grouped["example"].nunique().astype(float),
        "n_attrib": grouped["attrib"].count().astype(float),
    }
    wide = pd.DataFrame(stats).reindex(grouped.size().index)
    out = wide.rename_axis(columns="statistic").stack(future_stack=True).rename("value").reset_index()
    return out[[*group, "statistic", "value"]]
