"""Seaborn figures in the paper's style; each saves its table first, then the figure."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tinylang.study import run_tables as tables  # noqa: E402
from tinylang.tables import write_table  # noqa: E402

PathLike = str | os.PathLike


def _save(fig: plt.Figure, table: pd.DataFrame, table_path: PathLike, figure_paths: Sequence[PathLike]) -> None:
    write_table(table, table_path)
    for path in figure_paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    plt.close(fig)


def _no_data(message: str, table: pd.DataFrame, table_path: PathLike, figure_paths: Sequence[PathLike]) -> pd.DataFrame:
    """An empty table and a figure that says why (e.g. a run that failed before this checkpoint)."""
    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    _save(fig, table, table_path, figure_paths)
    return table


def training_curves(logs: Mapping[str, PathLike], table_path: PathLike, figure_paths: Sequence[PathLike]) -> pd.DataFrame:
    """Training loss against step, one line per run."""
    table = tables.training_table(logs)
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sns.lineplot(table[table["metric"] == "loss"], x="step", y="value", hue="run", ax=ax)
    ax.set(yscale="log", ylabel="training loss", title="Training curves")
    _save(fig, table, table_path, figure_paths)
    return table


def accuracy(behaviour_tables: Iterable[PathLike], table_path: PathLike, figure_paths: Sequence[PathLike]) -> pd.DataFrame:
    """Answer accuracy across checkpoints (left) and at the last checkpoint (right), per run."""
    table = tables.accuracy_table(behaviour_tables)
    final = tables.latest_step(table)
    sns.set_theme(style="whitegrid", context="paper")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    sns.lineplot(table, x="step", y="value", hue="run", style="split", marker="o", ax=left)
    left.set(ylabel="answer accuracy", ylim=(-0.02, 1.02), title="Across training")
    sns.barplot(final, x="run", y="value", hue="split", ax=right)
    right.set(ylabel="answer accuracy", ylim=(0, 1.02), title="Final checkpoint")
    _save(fig, table, table_path, figure_paths)
    return table


def intervention_heatmap(
    intervention_tables: Iterable[PathLike], table_path: PathLike, figure_paths: Sequence[PathLike]
) -> pd.DataFrame:
    """Mean restored answer probability (patched − corrupted) per layer × probe position (and the
    ``random`` control position), one panel per (corrupted item, component), at the latest step.

    The saved table is the whole ``restoration_summary`` (means, medians, KL, attrib, share of
    examples each position / layer restores most); the heatmap shows its ``p_diff_mean``."""
    from tinylang.evaluation.restoration import restoration_summary

    interventions = tables.concat_tables(intervention_tables)
    if interventions.empty:  # the run failed before the analysed checkpoint
        return _no_data("no intervention results (did the run fail?)", interventions, table_path, figure_paths)
    table = restoration_summary(tables.latest_step(interventions))
    shown = table[table["statistic"] == "p_diff_mean"]
    positions = list(dict.fromkeys(shown["position"]))
    components = list(dict.fromkeys(shown["component"]))
    sns.set_theme(style="white", context="paper")
    grid = sns.FacetGrid(shown, row="corrupted", col="component", col_order=components, height=2.0, aspect=1.3)
    lo, hi = min(shown["value"].min(), 0.0), max(shown["value"].max(), 1e-6)

    def draw(data: pd.DataFrame, **_: object) -> None:
        matrix = data.pivot(index="layer", columns="position", values="value").reindex(columns=positions)
        ax = plt.gca()
        sns.heatmap(matrix, vmin=lo, vmax=hi, cmap="viridis", cbar=False, annot=True, fmt=".2f",
                    annot_kws={"size": 5}, xticklabels=True, yticklabels=True, ax=ax)
        ax.tick_params(axis="x", labelrotation=60, labelsize=6)

    grid.map_dataframe(draw)
    grid.set_titles("{row_name} | {col_name}", size=7)
    run, step = table["run"].iloc[0], table["step"].iloc[0]
    grid.figure.suptitle(f"{run} @ step {step}: Δp(answer), patched − corrupted", y=1.02)
    _save(grid.figure, table, table_path, figure_paths)
    return table


def language_stats(language_dirs: Mapping[str, PathLike], table_path: PathLike, figure_paths: Sequence[PathLike]) -> pd.DataFrame:
    """Distribution of each generation statistic, per language and split."""
    table = tables.language_stats_table(language_dirs)
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.catplot(table, x="value", y="language", hue="split", col="statistic", col_wrap=4,
                       kind="box", sharex=False, height=2.2, aspect=1.4, fliersize=1)
    grid.set_titles("{col_name}")
    _save(grid.figure, table, table_path, figure_paths)
    return table


ATTRIB_AXIS = (-0.5, 1.5)
"""The Attrib axis, widened only to show every kept run: a dropped run's ratio has a tiny gap
under it and can reach ±500, which would flatten every other bar to a line."""


def _clip_bars(ax, kept_values: pd.Series) -> int:
    """Limit the y axis to ``ATTRIB_AXIS`` (widened to the kept runs' values); print the value of
    each bar beyond it at the edge. Returns how many bars were clipped."""
    finite = kept_values[np.isfinite(kept_values)]
    low = min(ATTRIB_AXIS[0], float(finite.min()) - 0.1) if len(finite) else ATTRIB_AXIS[0]
    high = max(ATTRIB_AXIS[1], float(finite.max()) + 0.1) if len(finite) else ATTRIB_AXIS[1]
    ax.set_ylim(low, high)
    clipped = 0
    for bar in ax.patches:
        value = bar.get_height() if bar.get_y() == 0 else bar.get_y() + bar.get_height()
        if np.isfinite(value) and not low <= value <= high:
            clipped += 1
            edge = high if value > high else low
            ax.annotate(f"{value:.3g}", (bar.get_x() + bar.get_width() / 2, edge), ha="center",
                        va="top" if value > high else "bottom", fontsize=6, rotation=90)
    return clipped


def attribution(intervention_tables: Iterable[PathLike], table_path: PathLike,
                figure_paths: Sequence[PathLike]) -> pd.DataFrame:
    """The paper's Attrib (ratio of means over examples) at @Key / @Value / @Query per run, read
    at the last layer's block_input with the in-context key corrupted. Runs the gap filter drops
    (the corruption lowered the mean answer probability by at most 0.01) are drawn faint and
    marked "dropped" with their gap."""
    interventions = tables.concat_tables(intervention_tables)
    if interventions.empty:  # every run failed before the analysed checkpoint
        return _no_data("no intervention results (did the runs fail?)", interventions, table_path, figure_paths)
    table = tables.attribution_table(intervention_tables)
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(2.2 + 1.4 * table["run"].nunique(), 3.2))
    runs = list(dict.fromkeys(table["run"]))
    sns.barplot(table, x="run", y="attrib", hue="readout", order=runs, hue_order=["@Key", "@Value", "@Query"], ax=ax)
    gaps = table.drop_duplicates("run").set_index("run")
    dropped = [run for run in runs if not bool(gaps.loc[run, "kept"])]
    faint = {runs.index(run) for run in dropped}
    for bar in ax.patches:
        if round(bar.get_x() + bar.get_width() / 2) in faint:
            bar.set_alpha(0.3)
    ax.set_xticks(range(len(runs)), [f"{run}\n(dropped: gap {gaps.loc[run, 'gap']:.3f})" if run in dropped else run
                                     for run in runs], rotation=45 if len(runs) > 8 else 0,
                  ha="right" if len(runs) > 8 else "center")
    ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle=":")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    clipped = _clip_bars(ax, table.loc[table["kept"].astype(bool), "attrib"])
    note = f"; {clipped} bar(s) past the axis, their value printed at its edge" if clipped else ""
    ax.set(ylabel="Attrib (restored share of the gap)", xlabel="", title="Where the association is read" + note)
    _save(fig, table, table_path, figure_paths)
    return table
