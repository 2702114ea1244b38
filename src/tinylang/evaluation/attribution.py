"""The paper's headline mechanism statistic, Attrib, and its per-example variant.

Attrib of one readout (corrupted item, component, layer, position) of one run at one checkpoint,
over the evaluation examples::

    attrib = mean(p_patched - p_corrupted) / (mean p_clean - mean p_corrupted)

a ratio of means (``attributions``): the share of the corruption's damage to the answer's
probability that patching the clean activation there repairs. It can exceed 1 (patching
over-restores) and be negative (patching hurts further). Its denominator, ``gap = mean p_clean -
mean p_corrupted``, is how much the corruption hurt at all: a run whose gap is at most
``MIN_GAP`` (0.01) has nothing to restore, its Attrib is a ratio of noise, and the paper leaves
it out (``kept`` False here). Where a position exists in only some examples (the ``random``
control), numerator and denominator both average over the examples that have it; ``kept`` always
uses the run's gap over every example.

The per-example ratio ``(p_patched - p_corrupted) / (p_clean - p_corrupted)``
(``example_attributions``, examples the corruption did not harm left out) is kept as a
secondary statistic: its median is ``attrib_example_median``.

Readouts. The headline reads the last layer's ``block_input`` with the in-context key
(``query_item_orig``) corrupted: "@Key" patches at ``query_item_orig``, "@Value" at
``target_item_orig`` and "@Query" at ``query_item``. @Value ≈ 1 with @Query ≈ 0 is the induction
signature (the association is stored in context); @Query high with @Value ≈ 0 the last-state one.
For a one-layer model the last layer's ``block_input`` is the embedding, where @Value and @Query
are no-ops by construction; the per-layer readout (the paper's layer appendix) is the sequence
mixer's output (``mixer_output``) at the query (@Query) at every layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

READOUTS = {"@Key": "query_item_orig", "@Value": "target_item_orig", "@Query": "query_item"}
MIN_GAP = 0.01
"""A run is kept for the mechanism figures only if ``mean p_clean - mean p_corrupted > MIN_GAP``."""
HEADLINE_COMPONENT = "block_input"  # at the last layer
HEADLINE_CORRUPTED = "query_item_orig"
LAYER_COMPONENT = "mixer_output"  # at every layer
LAYER_READOUT = "@Query"


def table_keys(table: pd.DataFrame) -> list[str]:
    """The identifying columns an intervention table has of ``run``, ``step`` and ``split``."""
    # Splits are never pooled: their examples share indices, and the paper reads dev and test apart.
    return [c for c in ("run", "step", "split") if c in table.columns]


def example_attributions(table: pd.DataFrame) -> pd.DataFrame:
    """Per-example ``attrib`` for every patch row of an intervention table (``run_interventions``
    output, optionally with ``run``/``step`` columns), with the example's ``p_clean``,
    ``p_corrupted`` and ``p_patched``; examples the corruption did not harm have ``attrib`` NaN."""
    keys = table_keys(table)
    reference = table[table.layer == -1].pivot_table(
        index=[*keys, "example", "corrupted"], columns="metric", values="value"
    )[["p_clean", "p_corrupted"]]
    patched = table[table.metric == "p_patched"].rename(columns={"value": "p_patched"})
    merged = patched.drop(columns="metric").merge(reference.reset_index(), on=[*keys, "example", "corrupted"])
    merged = merged.astype({"p_patched": "float64", "p_clean": "float64", "p_corrupted": "float64"})
    gap = merged.p_clean - merged.p_corrupted
    merged["attrib"] = ((merged.p_patched - merged.p_corrupted) / gap).where(gap > 0)
    return merged


def reference_gaps(table: pd.DataFrame, min_gap: float = MIN_GAP) -> pd.DataFrame:
    """The run filter: per (``run``, ``step``, ``split`` where present,) corrupted item, the mean ``p_clean``
    and ``p_corrupted`` over every example, ``gap`` (their difference), ``n`` examples and
    ``kept = gap > min_gap``."""
    keys = table_keys(table)
    reference = table[table.layer == -1].pivot_table(
        index=[*keys, "corrupted", "example"], columns="metric", values="value"
    )[["p_clean", "p_corrupted"]].astype("float64")
    grouped = reference.groupby(level=[*keys, "corrupted"], sort=False)
    out = grouped.mean()
    out["gap"] = out.p_clean - out.p_corrupted
    out["n"] = grouped.size()
    out["kept"] = out["gap"] > min_gap
    out.columns.name = None
    return out.reset_index()


def attributions(table: pd.DataFrame, min_gap: float = MIN_GAP) -> pd.DataFrame:
    """Attrib (ratio of means) for every readout of an intervention table.

    One row per (``run``, ``step``, ``split`` where present,) ``corrupted, layer, component, position``
    with the means ``p_clean, p_corrupted, p_patched`` over the examples that have the position,
    ``gap = p_clean - p_corrupted``, ``attrib = (p_patched - p_corrupted) / gap`` (NaN where the
    gap is 0), ``attrib_example_median`` (of the per-example ratio, see ``example_attributions``),
    ``n`` (examples averaged), ``n_example`` (examples with a per-example ratio) and ``kept``: the
    run filter, ``gap > min_gap`` over every example (``reference_gaps``).
    """
    keys = table_keys(table)
    group = [*keys, "corrupted", "layer", "component", "position"]
    per_example = example_attributions(table)
    per_example = per_example[np.isfinite(per_example["p_patched"])]
    grouped = per_example.groupby(group, sort=False)
    out = grouped[["p_clean", "p_corrupted", "p_patched"]].mean()
    out["gap"] = out.p_clean - out.p_corrupted
    out["attrib"] = ((out.p_patched - out.p_corrupted) / out.gap.where(out.gap != 0)).astype("float64")
    out["attrib_example_median"] = grouped["attrib"].median()
    out["n"] = grouped.size()
    out["n_example"] = grouped["attrib"].count()
    out = out.reset_index()
    kept = reference_gaps(table, min_gap)[[*keys, "corrupted", "kept"]]
    return out.merge(kept, on=[*keys, "corrupted"], how="left")


def readout_subset(table: pd.DataFrame, components: list[str] | None = None,
                   corrupted: list[str] | None = None) -> pd.DataFrame:
    """The rows of an intervention table that Attrib at @Key/@Value/@Query needs (the reference
    ``p_clean``/``p_corrupted`` and ``p_patched`` at those positions), optionally of some
    ``components`` and ``corrupted`` items only: less to aggregate over a whole study."""
    keep = (table["metric"].isin(["p_clean", "p_corrupted"]) & (table["layer"] == -1)) | (
        (table["metric"] == "p_patched") & table["position"].isin(list(READOUTS.values())))
    if components is not None:
        keep &= (table["layer"] == -1) | table["component"].isin(components)
    if corrupted is not None:
        keep &= table["corrupted"].isin(corrupted)
    return table[keep]


def last_layer(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's (or, without a ``run`` column, the table's) deepest layer."""
    deepest = table.groupby("run")["layer"].transform("max") if "run" in table else table["layer"].max()
    return table[table["layer"] == deepest]


def readout_rows(attrib: pd.DataFrame, component: str = HEADLINE_COMPONENT, corrupted: str = HEADLINE_CORRUPTED,
                 layer: int | None = None) -> pd.DataFrame:
    """The rows of an ``attributions`` table at the @Key/@Value/@Query positions of one
    (component, corrupted item) with a ``readout`` column; ``layer`` None: each run's last layer,
    ``-1``: every layer, otherwise that layer."""
    rows = attrib[(attrib["component"] == component) & (attrib["corrupted"] == corrupted)
                  & attrib["position"].isin(list(READOUTS.values()))]
    if layer is None:
        rows = last_layer(rows)
    elif layer >= 0:
        rows = rows[rows["layer"] == layer]
    name = {position: readout for readout, position in READOUTS.items()}
    return rows.assign(readout=rows["position"].map(name))


SUMMARY_STATISTICS = ("attrib", "gap", "kept", "attrib_example_median", "attrib_example_q25", "attrib_example_q75",
                      "n", "excluded")


def attribution_summary(table: pd.DataFrame, component: str = HEADLINE_COMPONENT, layer: int | None = None,
                        corrupted: str = HEADLINE_CORRUPTED, min_gap: float = MIN_GAP) -> pd.DataFrame:
    """Attrib at @Key, @Value and @Query (tidy: one row per readout and statistic, per run and
    step where present): the headline ``attrib`` (ratio of means), ``gap``, ``kept`` (1.0 / 0.0,
    the run filter ``gap > min_gap``), the per-example ratio's median and quartiles, the number of
    examples ``n`` with a per-example ratio and of those ``excluded`` (not harmed by the corruption).
    ``layer`` None: each run's last layer."""
    keys = table_keys(table)
    chosen = readout_rows(attributions(table, min_gap), component, corrupted, layer)
    per_example = readout_rows(example_attributions(table), component, corrupted, layer)
    quartiles = per_example.groupby([*keys, "position"])["attrib"].quantile([0.25, 0.75]).unstack()
    quartiles.columns = ["attrib_example_q25", "attrib_example_q75"]
    excluded = per_example["attrib"].isna().groupby([per_example[c] for c in [*keys, "position"]]).sum()
    chosen = chosen.merge(quartiles.reset_index(), on=[*keys, "position"], how="left")
    chosen = chosen.merge(excluded.rename("excluded").reset_index(), on=[*keys, "position"], how="left")
    chosen = chosen.assign(kept=chosen["kept"].astype(float), n=chosen["n_example"].astype(float),
                           excluded=chosen["excluded"].astype(float))
    long = chosen.melt(id_vars=[*keys, "readout", "position", "component", "layer", "corrupted"],
                       value_vars=list(SUMMARY_STATISTICS), var_name="statistic", value_name="value")
    order = {name: i for i, name in enumerate(READOUTS)}
    long = long.sort_values([*keys, "readout"], key=lambda c: c.map(order) if c.name == "readout" else c,
                            kind="stable")
    return long.reset_index(drop=True)
