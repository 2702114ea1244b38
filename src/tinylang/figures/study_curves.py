"""Accuracy and the headline Attrib over training, per run."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from tinylang.figures._study_style import (
    _CI_ALPHA,
    COORDINATES,
    QUANTITIES,
    FigureLike,
    Plot,
    _band_line,
    _empty,
    _header,
    _labels,
    _legend,
    _plot,
    _references,
    _require,
    _selected,
    _style,
    _subplots,
    _variants,
    mixer_palette,
)


def _quantity_order(quantities: Iterable[str]) -> list[str]:
    present = set(quantities)
    return [q for q in QUANTITIES if q in present] + sorted(present - set(QUANTITIES))


def training_curves(curves: pd.DataFrame, *, fig: FigureLike | None = None) -> Plot:
    """Accuracy (report split) and the headline Attrib at @Key/@Query/@Value (NaN, so
    not drawn, at steps where the gap filter drops a run) against training step for the
    selected runs: one line per configuration, the mean over seeds
    with the seeds' min–max range as a band; columns by quantity, rows by ``language`` /
    ``n_layers`` / ``d_model`` (where they vary); colour by mixer, dashed for learned
    positions.

    ``fig``: a figure or subfigure to draw into. The Plot's table: the configuration columns (every column but
    ``run, seed, step, quantity, value, selected``), ``quantity, step`` and ``mean, min,
    max, n_seeds`` over the selected seeds."""
    _require(curves, [*COORDINATES, "step", "quantity", "value", "selected"], "curves")
    rows = _selected(curves)
    config = [c for c in rows.columns if c not in ("run", "seed", "step", "quantity", "value", "selected")]
    table = (rows.groupby([*config, "quantity", "step"], dropna=False, sort=True)["value"]
             .agg(mean="mean", min="min", max="max", n_seeds="count").reset_index())
    with _style():
        if table.empty:
            return _plot(_empty("no selected runs", fig), table)
        quantities = _quantity_order(table["quantity"])
        rows_, row_order = _labels(table, ["language", "n_layers", "d_model"])
        variants, markers = _variants(table)
        draw = table.assign(_row=rows_, _variant=variants)
        palette = mixer_palette(table["mixer"])
        fig, axes = _subplots(len(row_order), len(quantities), 2.4, 1.8, sharex=True, sharey="col", fig=fig)
        for (row, quantity), panel in draw.groupby(["_row", "quantity"], sort=False):
            ax = axes[row_order.index(row), quantities.index(quantity)]
            for (mixer, pos, variant), line in panel.groupby(["mixer", "pos_embed", "_variant"], sort=False):
                _band_line(ax, line, "step", ("min", "max"), palette[mixer], pos, linewidth=1.2,
                           marker=markers[variant], markersize=3, markevery=max(1, len(line) // 6))
        _quantity_axes(axes, table, quantities)
        for i, row in enumerate(row_order):
            axes[i, 0].set_ylabel(row or "value", fontsize="small")
        band = Patch(color="0.3", alpha=_CI_ALPHA * 2, linewidth=0, label="seed range")
        _legend(fig, table["mixer"], positions=table["pos_embed"], variants=markers, extra=[_header(""), band])
        return _plot(fig, table)


def _quantity_axes(axes: np.ndarray, table: pd.DataFrame, quantities: list[str]) -> None:
    """A column per quantity: accuracy from 0 to 1; every Attrib column on one range holding
    0, 1 and every value, with reference lines."""
    attrib = table[table["quantity"].str.startswith("attrib")]
    low = min(0.0, attrib["min"].min()) if len(attrib) else 0.0
    high = max(1.0, attrib["max"].max()) if len(attrib) else 1.0
    pad = 0.05 * (high - low)
    for j, quantity in enumerate(quantities):
        for ax in axes[:, j]:
            if quantity == "accuracy":
                ax.set_ylim(-0.02, 1.02)
            else:
                _references(ax)
                ax.set_ylim(low - pad, high + pad)
        axes[0, j].set_title(quantity.replace("attrib@", "attrib @"), fontsize="medium")
        axes[-1, j].set_xlabel("step")
