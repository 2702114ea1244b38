"""Accuracy against width at each configuration's selected learning rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from tinylang.figures._study_style import (
    _CI_ALPHA,
    _PAPER_MAX_LINE,
    FigureLike,
    Plot,
    _band_line,
    _empty,
    _header,
    _labels,
    _legend,
    _one_metric,
    _paper_legend,
    _paper_panels,
    _paper_point,
    _paper_rows,
    _plot,
    _require,
    _set_titles,
    _style,
    _subplots,
    _variants,
    _width_axis,
    _with_paper,
    mixer_palette,
)


def accuracy_vs_width(
    selection: pd.DataFrame,
    *,
    metric: str | None = None,
    reference: pd.DataFrame | None = None,
    fig: FigureLike | None = None,
) -> Plot:
    """Accuracy at the selected learning rate against width: the mean over seeds on the
    report split with its 95% interval as a band (cut to [0, 1] for accuracy), one line per
    mixer (solid NoPE, dashed learned positions), d_model on a log2 axis; columns by
    ``n_layers``, rows by ``language``.

    ``selection``: the selection table (one row per configuration). ``metric``: which
    metric's rows to draw; by default the only one present (a ValueError if there are
    several). ``reference``: the paper's numbers (``tinylang.figures.reference``), drawn
    where they match (that metric, a language, mixer, layer count and positions drawn, the
    report split or none named), at their widths (which join the axis). ``fig``: a figure
    or subfigure to draw into. The Plot's table is the rows drawn (``selection`` restricted
    to that metric; with a reference, followed by the paper's rows and marked by
    ``source``)."""
    _require(selection, ["language", "mixer", "d_model", "n_layers", "pos_embed", "mean", "ci_low", "ci_high"],
             "selection")
    table, metric = _one_metric(selection, metric, "selection")
    with _style():
        if table.empty:
            return _plot(_empty(f"no {metric} rows to draw", fig), table)
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        variants, markers = _variants(table)
        draw = table.assign(_row=rows, _col=cols, _variant=variants)
        palette = mixer_palette(table["mixer"])
        paper = _paper_at_report_split(_paper_rows(reference, table, metric), table)
        paper_widths = [] if paper is None else paper["d_model"].dropna().astype(int).tolist()
        widths = sorted({int(w) for w in table["d_model"].unique()} | set(paper_widths))
        fig, axes = _subplots(len(row_order), len(col_order), 2.9, 2.3, sharex=True, sharey=True, fig=fig)
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            for (mixer, pos, variant), line in panel.groupby(["mixer", "pos_embed", "_variant"], sort=False):
                _band_line(ax, line, "d_model", ("ci_low", "ci_high"), palette[mixer], pos,
                           limits=(0.0, 1.0) if metric == "accuracy" else None, marker=markers[variant], markersize=4)
        _draw_paper(axes, paper, draw, row_order, col_order, palette)
        split = ", ".join(dict.fromkeys(table["report_split"])) if "report_split" in table else ""
        _width_axes(axes, widths, f"{metric} ({split})" if split else metric)
        _set_titles(axes, row_order, col_order)
        ci = Patch(
            color="0.3", alpha=_CI_ALPHA * 2, linewidth=0, label="95% CI over seeds"
        )
        _legend(
            fig,
            table["mixer"],
            positions=table["pos_embed"],
            variants=markers,
            extra=[_header(""), ci, *_paper_legend(paper)],
        )
        return _plot(fig, _with_paper(table, paper, "mean"))


def _paper_at_report_split(paper: pd.DataFrame | None, table: pd.DataFrame) -> pd.DataFrame | None:
    """The paper's rows read on the split we report on (or on no split named)."""
    if paper is None or "report_split" not in table:
        return paper
    return paper[paper["split"].isna() | paper["split"].isin(table["report_split"])]


def _draw_paper(axes: np.ndarray, paper: pd.DataFrame | None, draw: pd.DataFrame, row_order: list[str],
                col_order: list[str], palette: dict[str, str]) -> None:
    """The paper's values: a point at its width, or a line for a best-over-widths value."""
    for i, j, row in _paper_panels(paper, draw, row_order, col_order):
        ax, colour = axes[i, j], palette[row["mixer"]]
        if row["statistic"] == "max_over_widths":
            ax.axhline(row["value"], color=colour, **_PAPER_MAX_LINE)
        else:
            _paper_point(ax, row["d_model"], row, colour)


def _width_axes(axes: np.ndarray, widths: list[int], ylabel: str) -> None:
    for ax in axes.flat:
        _width_axis(ax, widths)
        ax.set_ylim(0, 1.02)
    for ax in axes[-1, :]:
        ax.set_xlabel("d_model")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
