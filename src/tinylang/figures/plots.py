"""The per-run figures in the paper's style, drawn from a run's files. Each returns a ``Plot``
(the figure and the tidy table it draws) and writes no file; ``fig=`` draws into a given
``Figure`` or ``SubFigure``, and the one-panel figures also take ``ax=``."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from tinylang.figures._study_style import FigureLike, Plot, _boxplot, _empty, _plot, _style, _subplots
from tinylang.study import run_tables as tables

PathLike = str | os.PathLike


def training_curves(logs: Mapping[str, PathLike], *, fig: FigureLike | None = None,
                    ax: Axes | None = None) -> Plot:
    """Training loss against step, one line per run (``logs``: run name → train log)."""
    table = tables.training_table(logs)
    with _style(font_scale=1.0):
        fig, axes = _subplots(1, 1, 5, 3.2, fig=fig, ax=ax, pad=(0, 0))
        ax = axes[0, 0]
        sns.lineplot(table[table["metric"] == "loss"], x="step", y="value", hue="run", ax=ax)
        ax.set(yscale="log", ylabel="training loss", title="Training curves")
    return _plot(fig, table)


def accuracy(behaviour_tables: Iterable[PathLike], *, fig: FigureLike | None = None) -> Plot:
    """Answer accuracy across checkpoints (left) and at the last checkpoint (right), per run."""
    table = tables.accuracy_table(behaviour_tables)
    final = tables.latest_step(table)
    with _style(font_scale=1.0):
        fig, axes = _subplots(1, 2, 4.5, 3.2, fig=fig, pad=(0, 0), gridspec_kw={"width_ratios": [3, 2]})
        left, right = axes[0]
        sns.lineplot(table, x="step", y="value", hue="run", style="split", marker="o", ax=left)
        left.set(ylabel="answer accuracy", ylim=(-0.02, 1.02), title="Across training")
        sns.barplot(final, x="run", y="value", hue="split", ax=right)
        right.set(ylabel="answer accuracy", ylim=(0, 1.02), title="Final checkpoint")
    return _plot(fig, table)


def intervention_heatmap(intervention_tables: Iterable[PathLike], *, fig: FigureLike | None = None) -> Plot:
    """Mean restored answer probability (patched − corrupted) per layer × probe position (and the
    ``random`` control position), one panel per (corrupted item, component), at the latest step.

    The Plot's table is the whole ``restoration_summary`` (means, medians, KL, attrib, share of
    examples each position / layer restores most); the heatmap shows its ``p_diff_mean``."""
    from tinylang.evaluation.restoration import restoration_summary

    interventions = tables.concat_tables(intervention_tables)
    with _style("white", font_scale=1.0):
        if interventions.empty:  # the run failed before the analysed checkpoint
            return _plot(_empty("no intervention results (did the run fail?)", fig), interventions)
        table = restoration_summary(tables.latest_step(interventions))
        fig = _heatmaps(table[table["statistic"] == "p_diff_mean"], fig)
        run, step = table["run"].iloc[0], table["step"].iloc[0]
        fig.suptitle(f"{run} @ step {step}: Δp(answer), patched − corrupted")
    return _plot(fig, table)


def _heatmaps(shown: pd.DataFrame, fig: FigureLike | None) -> FigureLike:
    """One heatmap of layer × position per (corrupted item, component), on one colour scale."""
    positions = list(dict.fromkeys(shown["position"]))
    components = list(dict.fromkeys(shown["component"]))
    corrupted = list(dict.fromkeys(shown["corrupted"]))
    fig, axes = _subplots(len(corrupted), len(components), 2.6, 2.0, fig=fig, pad=(0, 0.3), sharex=True,
                          sharey=True)
    lo, hi = min(shown["value"].min(), 0.0), max(shown["value"].max(), 1e-6)
    for (item, component), data in shown.groupby(["corrupted", "component"], sort=False):
        ax = axes[corrupted.index(item), components.index(component)]
        matrix = data.pivot(index="layer", columns="position", values="value").reindex(columns=positions)
        sns.heatmap(matrix, vmin=lo, vmax=hi, cmap="viridis", cbar=False, annot=True, fmt=".2f",
                    annot_kws={"size": 5}, xticklabels=True, yticklabels=True, ax=ax)
        ax.tick_params(axis="x", labelrotation=60, labelsize=6)
        ax.set_title(f"{item} | {component}", size=7)
    for ax in axes.flat:
        ax.label_outer()
    return fig


def language_stats(language_dirs: Mapping[str, PathLike], *, fig: FigureLike | None = None) -> Plot:
    """Distribution of each generation statistic, per language and split (``language_dirs``:
    language name → its folder), four panels a row."""
    table = tables.language_stats_table(language_dirs)
    statistics = list(dict.fromkeys(table["statistic"]))
    languages, splits = list(dict.fromkeys(table["language"])), list(dict.fromkeys(table["split"]))
    n_cols = min(4, len(statistics))
    with _style(font_scale=1.0):
        palette = dict(zip(splits, sns.color_palette(n_colors=len(splits))))
        fig, axes = _subplots(math.ceil(len(statistics) / n_cols), n_cols, 3.08, 2.2, fig=fig, pad=(0.8, 0),
                              sharey=True)
        for i, (ax, statistic) in enumerate(zip(axes.flat, statistics)):
            _boxplot(data=table[table["statistic"] == statistic], x="value", y="language", hue="split",
                     order=languages, hue_order=splits, palette=palette, fliersize=1, legend=False, ax=ax)
            bottom, left = i + n_cols >= len(statistics), i % n_cols == 0
            ax.set(title=statistic, xlabel="value" if bottom else "", ylabel="language" if left else "")
            sns.despine(ax=ax)
        for ax in axes.flat[len(statistics):]:
            ax.remove()
        handles = [Patch(facecolor=colour, edgecolor="0.25", label=split) for split, colour in palette.items()]
        fig.legend(handles=handles, title="split", loc="outside right center", frameon=False)
    return _plot(fig, table)


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


def attribution(intervention_tables: Iterable[PathLike], *, fig: FigureLike | None = None,
                ax: Axes | None = None) -> Plot:
    """The paper's Attrib (ratio of means over examples) at @Key / @Value / @Query per run, read
    at the last layer's block_input with the in-context key corrupted. Runs the gap filter drops
    (the corruption lowered the mean answer probability by at most 0.01) are drawn faint and
    marked "dropped" with their gap."""
    interventions = tables.concat_tables(intervention_tables)
    with _style(font_scale=1.0):
        if interventions.empty:  # every run failed before the analysed checkpoint
            return _plot(_empty("no intervention results (did the runs fail?)", fig, ax), interventions)
        table = tables.attribution_table(intervention_tables)
        fig, axes = _subplots(1, 1, 2.2 + 1.4 * table["run"].nunique(), 3.2, fig=fig, ax=ax, pad=(0, 0))
        _attribution_bars(axes[0, 0], table)
    return _plot(fig, table)


def _attribution_bars(ax: Axes, table: pd.DataFrame) -> None:
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
