"""The mechanism figures: the paper's Attrib of every kept run, as a scatter, boxes and per layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tinylang.figures._study_style import (
    COORDINATES,
    HEADLINE_COMPONENT,
    HEADLINE_CORRUPTED,
    LAYER_COMPONENT,
    LAYER_READOUT,
    READOUTS,
    FigureLike,
    Plot,
    _boxplot,
    _by_labels,
    _dropped_notes,
    _empty,
    _figure_legend,
    _fmt,
    _header,
    _headline_rows,
    _labels,
    _last_layer,
    _legend,
    _paper_legend,
    _paper_panels,
    _paper_point,
    _paper_rows,
    _plot,
    _references,
    _require,
    _set_titles,
    _style,
    _subplots,
    _variants,
    _with_paper,
    mixer_order,
    mixer_palette,
)


def mechanism_points(
    mechanism: pd.DataFrame,
    *,
    component: str = HEADLINE_COMPONENT,
    corrupted: str = HEADLINE_CORRUPTED,
    kept_only: bool = True,
) -> pd.DataFrame:
    """One row per run: the paper's Attrib (ratio of means) at each readout of ``component``
    at the run's last layer, ``corrupted`` corrupted: the run's coordinates and other per-run
    columns (``step, layer, gap, kept, selected``, ...) and one column ``attrib@Key``,
    ``attrib@Query``, ``attrib@Value`` per readout. ``kept_only``: only the runs the gap
    filter kept (every learning rate and width)."""
    _require(mechanism, ["run", "layer", "readout", "attrib", "kept"], "mechanism")
    rows = _last_layer(_headline_rows(mechanism, component, corrupted, kept_only=kept_only))
    values = rows.pivot_table(index="run", columns="readout", values="attrib", aggfunc="first", dropna=False)
    readouts = [r for r in READOUTS if r in values.columns] + sorted(set(values.columns) - set(READOUTS))
    values = values[readouts].rename(columns=lambda r: f"attrib{r}")
    values.columns.name = None
    per_readout = ["readout", "position", "attrib", "attrib_example_median", "p_patched", "example"]
    coords = rows.drop(columns=per_readout, errors="ignore").drop_duplicates("run")
    return coords.merge(values.reset_index(), on="run", how="left")


def mechanism_scatter(
    mechanism: pd.DataFrame,
    *,
    x: str = "@Value",
    y: str = "@Query",
    fig: FigureLike | None = None,
) -> Plot:
    """Where each run reads the association: one point per run the gap filter kept, over
    every learning rate and width (as the paper's scatter), its Attrib at the last layer's
    block input at readout ``x`` (default @Value) against ``y`` (default @Query), in-context
    key corrupted; colour by mixer, hollow markers for learned positions, marker shape by
    other sweep axes; reference lines at 0 and 1; each panel says how many runs the filter
    dropped. Columns by ``n_layers``, rows by ``language``.

    For one-layer models the last layer's block input is the embedding, so @Value and
    @Query are 0 by construction there: ``mechanism_layers`` reads those models.

    ``fig``: a figure or subfigure to draw into. The Plot's table is the points
    (``mechanism_points``)."""
    _require(mechanism, [*COORDINATES, "layer", "readout", "attrib", "kept"], "mechanism")
    table = mechanism_points(mechanism)
    xcol, ycol = f"attrib{x}", f"attrib{y}"
    with _style():
        if table.empty or xcol not in table or ycol not in table:
            return _plot(_empty(f"no kept runs with Attrib at {x} and {y}", fig), table)
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        variants, markers = _variants(table)
        draw = table.assign(_row=rows, _col=cols, _variant=variants)
        palette = mixer_palette(table["mixer"])
        fig, axes = _subplots(len(row_order), len(col_order), 2.7, 2.5, sharex=True, sharey=True, fig=fig)
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            for (mixer, pos, variant), points in panel.groupby(["mixer", "pos_embed", "_variant"], sort=False):
                colour = palette[mixer]
                ax.scatter(points[xcol], points[ycol], s=22, marker=markers[variant], linewidths=1.0,
                           facecolors="none" if pos else colour, edgecolors=colour, alpha=0.8, zorder=3)
        _dropped_notes(axes, _headline_rows(mechanism, kept_only=False), row_order, col_order)
        for ax in axes.flat:
            _references(ax, x=True, y=True)
        for ax in axes[-1, :]:
            ax.set_xlabel(f"Attrib {x}")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"Attrib {y}")
        _set_titles(axes, row_order, col_order)
        _legend(fig, table["mixer"], positions=table["pos_embed"], variants=markers, lines=False)
        return _plot(fig, table)


def _paper_beside_boxes(paper: pd.DataFrame | None, draw: pd.DataFrame, axes: np.ndarray, row_order: list[str],
                        col_order: list[str], readouts: list[str], hue_order: list[str],
                        palette: dict[str, str]) -> None:
    """The paper's values at the centre of their mixer's box (seaborn dodges a panel's hues
    evenly across the 0.8 wide slot of a readout)."""
    hues = {(r, c): [h for h in hue_order if h in set(panel["_hue"])]
            for (r, c), panel in draw.groupby(["_row", "_col"], sort=False)}
    for i, j, row in _paper_panels(paper, draw, row_order, col_order):
        shown = hues.get((row_order[i], col_order[j]), [])
        if row["mixer"] not in shown:
            continue
        offset = -0.4 + 0.8 * (shown.index(row["mixer"]) + 0.5) / len(shown)
        x = readouts.index(row["readout"]) + offset
        _paper_point(axes[i, j], x, row, palette[row["mixer"]])


def mechanism_boxes(
    mechanism: pd.DataFrame,
    *,
    by: str | None = None,
    reference: pd.DataFrame | None = None,
    fig: FigureLike | None = None,
) -> Plot:
    """The paper's Attrib at @Key, @Query and @Value of every run the gap filter kept (over
    all learning rates, widths and seeds) as box plots over runs, read at the last layer's
    block input with the in-context key corrupted; reference lines at 0 and 1.

    ``by=None``: x = readout, colour = mixer, at each run's last layer; columns by
    ``n_layers``, rows by ``language`` (where they vary); ``reference`` (the paper's Attrib,
    ``tinylang.figures.reference``) beside the boxes of its mixer and readout where the
    language, mixer and layer count match.

    ``by="<column>"`` splits on that column instead: colour = its values (missing
    values, such as an argument a mixer does not have, shown as "n/a"), one column of
    panels per mixer, rows by ``language`` / ``n_layers`` (where they vary, unless
    ``by`` is one of them). Examples: ``by="mixer_args.d_conv"`` (Mamba per convolution
    width), ``by="d_model"`` (per width), and ``by="layer"``, which draws every layer
    rather than only the last one.

    ``fig``: a figure or subfigure to draw into. The Plot's table is the rows drawn: the
    kept runs' rows at their last layer (every layer with ``by="layer"``), NaN Attrib left
    out; with a reference (``by=None``), followed by the paper's rows and marked by
    ``source``."""
    _require(mechanism, [*COORDINATES, "layer", "readout", "attrib", "kept"], "mechanism")
    _check_by(mechanism, by)
    rows = _headline_rows(mechanism, every_split=by == "split")
    rows = rows if by == "layer" else _last_layer(rows)
    table = rows[rows["attrib"].notna()]
    with _style():
        if table.empty:
            return _plot(_empty("no kept runs with Attrib", fig), table)
        readouts = [r for r in READOUTS if r in set(table["readout"])] + sorted(set(table["readout"]) - set(READOUTS))
        hue, hue_order, palette, (rows_, row_order), (cols, col_order) = _box_layout(table, by)
        draw = table.assign(_row=rows_, _col=cols, _hue=hue)
        width = 0.9 + 0.35 * len(readouts) * len(hue_order)
        fig, axes = _subplots(len(row_order), len(col_order), max(2.6, width), 2.5, sharex=True, sharey=True, fig=fig)
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            _boxes(axes[row_order.index(row), col_order.index(col)], panel, readouts, hue_order, palette)
        paper = None
        if by is None:
            paper = _paper_rows(reference, table, "attrib")
            paper = None if paper is None else paper[paper["readout"].isin(readouts)]
            _paper_beside_boxes(paper, draw, axes, row_order, col_order, readouts, hue_order, palette)
        for ax in axes.flat:
            _references(ax)
            ax.set_xlabel("")
        for ax in axes[:, 0]:
            ax.set_ylabel("Attrib (per run)")
        _set_titles(axes, row_order, col_order)
        if by is None:
            _dropped_notes(axes, _headline_rows(mechanism, kept_only=False), row_order, col_order)
            _legend(fig, table["mixer"], lines=False, extra=_paper_legend(paper))
            return _plot(fig, _with_paper(table, paper, "attrib"))
        _figure_legend(fig, [_header(by.rsplit(".", 1)[-1]),
                             *(Patch(facecolor=palette[h], edgecolor="0.3", label=h) for h in hue_order)])
        return _plot(fig, table)


def _check_by(mechanism: pd.DataFrame, by: str | None) -> None:
    if by is not None:
        _require(mechanism, [by], "mechanism")
        if by in ("mixer", "readout", "attrib", "example", "run", "selected", "kept"):
            raise ValueError(f"mechanism_boxes cannot split by {by!r}")


def _box_layout(table: pd.DataFrame, by: str | None):
    """Colours and facets of the mechanism boxes: ``(hue, hue_order, palette, rows, cols)``,
    rows and cols as ``(labels, order)``. By mixer (rows by language, columns by layers), or
    by ``by`` (viridis, "n/a" grey; one column per mixer)."""
    if by is None:
        return (table["mixer"], mixer_order(table["mixer"]), mixer_palette(table["mixer"]),
                _labels(table, ["language"]), _labels(table, ["n_layers"]))
    hue, hue_order = _by_labels(table, by)
    colours = sns.color_palette("viridis", len(hue_order)).as_hex()
    palette = {h: ("#9e9e9e" if h == "n/a" else c) for h, c in zip(hue_order, colours)}
    rows = _labels(table, [c for c in ("language", "n_layers") if c != by])
    cols, col_order = _labels(table, ["mixer"])
    if col_order == [""]:  # one mixer: still name it
        cols, col_order = pd.Series(table["mixer"].astype(str), index=table.index), [str(table["mixer"].iloc[0])]
    return hue, hue_order, palette, rows, (cols, col_order)


def _boxes(ax: object, panel: pd.DataFrame, readouts: list[str], hue_order: list[str],
           palette: dict[str, str]) -> None:
    _boxplot(data=panel, x="readout", y="attrib", hue="_hue", order=readouts,
             hue_order=[h for h in hue_order if h in set(panel["_hue"])], palette=palette, fliersize=1,
             linewidth=0.7, width=0.8, legend=False, ax=ax)


def mechanism_layers(
    mechanism: pd.DataFrame,
    *,
    component: str = LAYER_COMPONENT,
    readout: str = LAYER_READOUT,
    fig: FigureLike | None = None,
) -> Plot:
    """The per-layer readout (the paper's layer figure): the Attrib of the sequence mixer's
    output (``component``, default ``mixer_output``) at the query (``readout``, default
    @Query) at every layer, in-context key corrupted, for every run the gap filter kept: one
    point per run and layer (colour by mixer, hollow for learned positions, mixers side by
    side), a line through each mixer's median per layer; columns by ``n_layers``, rows by
    ``language``; each panel says how many runs the filter dropped. For a one-layer model
    this is the one place the context reaches the query, so the readout is not a no-op.

    ``fig``: a figure or subfigure to draw into. The Plot's table is the rows drawn (NaN
    Attrib left out)."""
    _require(mechanism, [*COORDINATES, "layer", "readout", "attrib", "kept"], "mechanism")
    every = _headline_rows(mechanism, component, kept_only=False)
    every = every[every["readout"] == readout]
    table = every[every["kept"].astype(bool) & every["attrib"].notna()]
    with _style():
        if table.empty:
            message = f"no kept runs with Attrib of {component} at {readout} (does the interventions evaluator compute it?)"
            return _plot(_empty(message, fig), table)
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        draw = table.assign(_row=rows, _col=cols)
        mixers = mixer_order(table["mixer"])
        palette = mixer_palette(mixers)
        offsets = dict(zip(mixers, np.linspace(-0.25, 0.25, len(mixers)) if len(mixers) > 1 else [0.0]))
        layers = sorted(table["layer"].unique())
        fig, axes = _subplots(len(row_order), len(col_order), 2.4 + 0.5 * len(layers), 2.5, sharey=True, fig=fig)
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            for (mixer, pos), points in panel.groupby(["mixer", "pos_embed"], sort=False):
                colour = palette[mixer]
                ax.scatter(points["layer"] + offsets[mixer], points["attrib"], s=14, linewidths=0.8,
                           facecolors="none" if pos else colour, edgecolors=colour, alpha=0.7, zorder=3)
            for mixer, points in panel.groupby("mixer", sort=False):
                medians = points.groupby("layer")["attrib"].median().sort_index()
                ax.plot(medians.index + offsets[mixer], medians.to_numpy(), color=palette[mixer],
                        linewidth=1.2, marker="_", markersize=9, zorder=4)
            shown = sorted(panel["layer"].unique())
            ax.set_xticks(shown, [_fmt(layer) for layer in shown])
            ax.set_xlim(min(shown) - 0.5, max(shown) + 0.5)
        _dropped_notes(axes, every, row_order, col_order)
        for ax in axes.flat:
            _references(ax)
        for ax in axes[-1, :]:
            ax.set_xlabel("layer")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"Attrib, {component} {readout}")
        _set_titles(axes, row_order, col_order)
        median = Line2D([], [], color="0.2", linewidth=1.2, marker="_", markersize=9, label="median over runs")
        _legend(fig, table["mixer"], positions=table["pos_embed"], lines=False, extra=[_header(""), median])
        return _plot(fig, table)
