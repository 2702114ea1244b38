"""The paper's headline metric: normalised restoration of the clean answer's probability.

``attrib = (p_patched - p_corrupted) / (p_clean - p_corrupted)`` per example; examples whose
corruption did not lower the answer's probability (``p_clean - p_corrupted <= 0``) are excluded
and counted. Read by default at ``block_input`` of the last layer with the in-context key
(``query_item_orig``) corrupted: "@Key" patches at ``query_item_orig``, "@Value" at
``target_item_orig`` and "@Query" at ``query_item``. @Value ≈ 1 with @Query ≈ 0 is the induction
signature (the association is stored in context); @Query high with @Value ≈ 0 is the last-state one.
"""

from __future__ import annotations

import pandas as pd

READOUTS = {"@Key": "query_item_orig", "@Value": "target_item_orig", "@Query": "query_item"}


def example_attributions(table: pd.DataFrame) -> pd.DataFrame:
    """Per-example ``attrib`` for every patch row of an intervention table (``run_interventions``
    output, optionally with ``run``/``step`` columns); excluded examples have ``attrib`` NaN."""
    keys = [c for c in ("run", "step") if c in table.columns]
    reference = table[table.layer == -1].pivot_table(
        index=[*keys, "example", "corrupted"], columns="metric", values="value"
    )[["p_clean", "p_corrupted"]]
    patched = table[table.metric == "p_patched"].rename(columns={"value": "p_patched"})
    merged = patched.drop(columns="metric").merge(reference.reset_index(), on=[*keys, "example", "corrupted"])
    gap = merged.p_clean - merged.p_corrupted
    merged["attrib"] = ((merged.p_patched - merged.p_corrupted) / gap).where(gap > 0)
    return merged


def attribution_summary(table: pd.DataFrame, component: str = "block_input", layer: int | None = None,
                        corrupted: str = "query_item_orig") -> pd.DataFrame:
    """Median and interquartile range of ``attrib`` for @Key, @Value and @Query (tidy: one row per
    readout and statistic), with the number of examples used and excluded."""
    per_example = example_attributions(table)
    keys = [c for c in ("run", "step") if c in per_example.columns]
    if layer is None:
        layer = int(per_example.layer.max())
    chosen = per_example[(per_example.component == component) & (per_example.layer == layer)
                         & (per_example.corrupted == corrupted)]
    rows = []
    for readout, position in READOUTS.items():
        at = chosen[chosen.position == position]
        for group, values in (at.groupby(keys) if keys else [((), at)]):
            ident = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
            used = values.attrib.dropna()
            stats = {
                "median": used.median(), "q25": used.quantile(0.25), "q75": used.quantile(0.75),
                "n": float(len(used)), "excluded": float(values.attrib.isna().sum()),
            }
            rows += [{**ident, "readout": readout, "position": position, "component": component, "layer": layer,
                      "corrupted": corrupted, "statistic": name, "value": value} for name, value in stats.items()]
    return pd.DataFrame(rows)
