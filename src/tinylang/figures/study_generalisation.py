"""Dev against test accuracy: does selection on one split carry over to the other?"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patheffects import withStroke

from tinylang.figures._study_style import (
    _REFERENCE,
    COORDINATES,
    FigureLike,
    Plot,
    _empty,
    _fmt,
    _header,
    _labels,
    _legend,
    _one_metric,
    _plot,
    _require,
    _set_titles,
    _style,
    _subplots,
    _variants,
    mixer_palette,
)


def generalisation_table(
    run_accuracy: pd.DataFrame,
    *,
    x_split: str = "dev",
    y_split: str = "test",
    metric: str | None = None,
) -> pd.DataFrame:
    """One row per run with a value on both splits: the run's coordinates and other
    columns (``step, metric, selected``, ...) and one column per split, named after it.
    """
    if x_split == y_split:
        raise ValueError(f"x_split and y_split are both {x_split!r}")
    _require(run_accuracy, ["run", "split", "value", "selected"], "run accuracy")
    rows, _ = _one_metric(run_accuracy, metric, "run accuracy")
    table = rows.drop(columns=["split", "value"]).drop_duplicates("run")
    for split in (x_split, y_split):
        at = rows.loc[rows["split"] == split, ["run", "value"]].drop_duplicates("run")
        table = table.merge(at.rename(columns={"value": split}), on="run")
    return table


def generalisation(
    run_accuracy: pd.DataFrame,
    *,
    x_split: str = "dev",
    y_split: str = "test",
    metric: str | None = None,
    fig: FigureLike | None = None,
) -> Plot:
    """Does selection on ``x_split`` carry over to ``y_split``? Every run's final
    accuracy on ``x_split`` (default dev) against ``y_split`` (default test) as a faint
    point, the selected runs as stronger points, and per mixer (and positions / other
    sweep axes) a line through the selected runs' means over seeds ordered by d_model
    (the smallest and largest widths written beside its ends); the diagonal for
    reference. Columns by ``n_layers``, rows by
    ``language``.

    ``metric``: which metric's rows; by default the only one present. ``fig``: a figure or
    subfigure to draw into. The Plot's table is the per-run table (``generalisation_table``): one row per run with both splits, the
    values in columns named after the splits. Runs lacking either split (e.g. languages
    without a dev split) are left out."""
    _require(run_accuracy, [*COORDINATES, "split", "value", "selected"], "run accuracy")
    table = generalisation_table(
        run_accuracy, x_split=x_split, y_split=y_split, metric=metric
    )
    metric = metric or (
        str(table["metric"].iloc[0]) if "metric" in table and len(table) else "accuracy"
    )
    with _style():
        if table.empty:
            message = f"no run has {metric} on both {x_split!r} and {y_split!r}"
            return _plot(_empty(message, fig), table)
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        variants, markers = _variants(table.drop(columns=[x_split, y_split]))
        draw = table.assign(
            _row=rows,
            _col=cols,
            _variant=variants,
            _selected=table["selected"].astype(bool),
        )
        palette = mixer_palette(table["mixer"])
        fig, axes = _subplots(len(row_order), len(col_order), 3.2, 3.2, sharex=True, sharey=True, fig=fig)
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            _draw_panel(axes[row_order.index(row), col_order.index(col)], panel, palette, markers, x_split, y_split)
        _unit_square_axes(axes, metric, x_split, y_split)
        _set_titles(axes, row_order, col_order)
        _legend(fig, table["mixer"], positions=table["pos_embed"], variants=markers, lines=False, extra=_run_legend())
        return _plot(fig, table)


def _draw_panel(ax: object, panel: pd.DataFrame, palette: dict[str, str], markers: dict[str, str], x_split: str,
                y_split: str) -> None:
    """One panel: faint points for the other learning rates; for the selected ones points and a
    line through their seed means by width, its end widths written beside it."""
    for (mixer, pos, variant, chosen), points in panel.groupby(["mixer", "pos_embed", "_variant", "_selected"],
                                                               sort=False):
        colour = palette[mixer]
        face = "none" if pos else colour
        ax.scatter(points[x_split], points[y_split], s=12 if chosen else 9, marker=markers[variant], facecolors=face,
                   edgecolors=colour, linewidths=0.8 if chosen else 0.6, alpha=0.6 if chosen else 0.3,
                   zorder=3 if chosen else 2)
        if not chosen:
            continue
        means = points.groupby("d_model")[[x_split, y_split]].mean().sort_index()
        ax.plot(means[x_split], means[y_split], color=colour, linestyle="--" if pos else "-", linewidth=1.2,
                marker=markers[variant], markersize=4, markerfacecolor="white" if pos else colour, zorder=4)
        ends = means.iloc[[0, -1]] if len(means) > 1 else means
        for d_model, (mx, my) in ends.iterrows():
            ax.annotate(_fmt(d_model), (mx, my), xytext=(4, -6), textcoords="offset points", fontsize=6, color=colour,
                        zorder=5, path_effects=[withStroke(linewidth=2, foreground="white")])


def _unit_square_axes(axes: np.ndarray, metric: str, x_split: str, y_split: str) -> None:
    """Both axes from 0 to 1 with the diagonal, labelled by the metric and split."""
    for ax in axes.flat:
        ax.plot([0, 1], [0, 1], **_REFERENCE)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
    for ax in axes[-1, :]:
        ax.set_xlabel(f"{metric} ({x_split})")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} ({y_split})")


def _run_legend() -> list[object]:
    return [
        _header(""),
        Line2D([], [], color="0.2", marker="o", linestyle="-", markersize=4,
               label="selected lr: runs, and\nseed means by d_model"),
        Line2D([], [], color="0.2", marker="o", linestyle="none", alpha=0.3, markersize=3, label="other learning rates"),
    ]
