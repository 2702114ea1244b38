"""A study's figures, drawn from its aggregate tables (``tinylang.study``).

Each function takes one tidy table, ``table_out`` (a Parquet path) and ``figure_outs``
(PNG/PDF paths), checks the columns it needs (a ValueError names the missing ones),
draws, saves the table it drew beside the figure (``tinylang.tables.write_table``) and
returns that table.

Conventions shared by every figure:

* one colour per mixer, fixed across figures (``mixer_palette``);
* positions: solid lines / filled markers for NoPE (``pos_embed == False``), dashed
  lines / hollow markers for learned positions;
* any column that is not a known coordinate or value column is taken for another sweep
  axis (e.g. ``mixer_args.d_conv``); where such axes vary, their values tell lines apart
  by marker shape (a missing value, as for a mixer without that argument, is left out of
  the label);
* facets: columns by ``n_layers`` and rows by ``language``, each only where it takes
  more than one value;
* a table with nothing to draw (e.g. no selected runs) gives a figure that says so, not
  an error;
* accuracy figures draw the runs at each configuration's selected (best) learning rate;
  mechanism figures draw every run the paper's gap filter keeps (``kept``), over all
  learning rates and widths, with the paper's Attrib (a ratio of means over examples, see
  ``tinylang.evaluation.attribution``);
* the paper's numbers (``reference=``, a ``tinylang.figures.reference.study_reference``
  table) are drawn beside ours where the figure's axes match (its metric, languages, mixers,
  layer counts and positions; the accuracy figure also the report split): black-edged
  diamonds in the mixer's colour labelled "paper" (a white centre for learned positions), a
  dotted line in the mixer's colour for a best-over-widths value; the saved table then has
  a ``source`` column, "ours" or "paper".

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state) inside
``rc_context``, so the seaborn theme does not leak into the caller's matplotlib
settings."""

from __future__ import annotations

import math
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.patheffects import withStroke

from tinylang.study.run_tables import report_split
from tinylang.tables import write_table

PathLike = str | os.PathLike

COORDINATES = (
    "run",
    "language",
    "mixer",
    "d_model",
    "n_layers",
    "pos_embed",
    "lr",
    "seed",
)
READOUTS = ("@Key", "@Query", "@Value")
# The readouts of tinylang.evaluation.attribution (not imported here: that package loads torch).
HEADLINE_COMPONENT = "block_input"  # at the last layer
HEADLINE_CORRUPTED = "query_item_orig"
LAYER_COMPONENT = "mixer_output"  # at every layer
LAYER_READOUT = "@Query"
QUANTITIES = ("accuracy", "attrib@Key", "attrib@Query", "attrib@Value")
# Columns of the study tables that are not sweep axes; every other column is one.
_NOT_AXES = frozenset(COORDINATES) | {
    "select_split",
    "report_split",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "n_seeds",
    "select_mean",
    "step",
    "split",
    "value",
    "selected",
    "layer",
    "readout",
    "example",
    "attrib",
    "quantity",
    "min",
    "max",
    # the mechanism table's readout and Attrib columns
    "corrupted",
    "component",
    "position",
    "attrib_example_median",
    "gap",
    "p_clean",
    "p_corrupted",
    "p_patched",
    "n",
    "n_example",
    "kept",
    "min_gap",
    "reason",
}

# Fixed mixer colours (seaborn's colorblind / dark hues; families share a hue range):
# a mixer keeps its colour whatever else is drawn. Their order is the legend's order.
_MIXER_COLOURS = {
    "attention": "#0173b2",  # blue
    "mamba": "#de8f05",  # the Mamba family: oranges and browns
    "mamba2": "#d55e00",
    "mamba_without_conv": "#b8850a",
    "mamba_conv1d": "#592f0d",
    "hyena": "#029e73",  # long convolutions: greens / teal
    "h3": "#12711c",
    "base_conv": "#006374",
    "based": "#56b4e9",  # linear attention: light blue, purples
    "deltanet": "#cc78bc",
    "rwkv": "#591e71",
    "lstm": "#3c3c3c",  # grey
}
MIXER_ORDER = tuple(_MIXER_COLOURS)
_OTHER_COLOURS = sns.color_palette("husl", 16).as_hex()
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_REFERENCE = {"color": "0.25", "linewidth": 1.0, "linestyle": ":", "zorder": 0.5}
_CI_ALPHA = 0.18


def mixer_order(mixers: Iterable[str]) -> list[str]:
    """The distinct ``mixers`` in the fixed order: known mixers as in ``MIXER_ORDER``,
    then any others alphabetically."""
    present = set(mixers)
    return [m for m in MIXER_ORDER if m in present] + sorted(present - set(MIXER_ORDER))


def mixer_palette(mixers: Iterable[str]) -> dict[str, str]:
    """Colour (hex) per mixer, in ``mixer_order``. A mixer's colour does not depend on
    which other mixers are drawn: known mixers have fixed colours, others one picked by
    a hash of the name."""
    return {
        m: _MIXER_COLOURS.get(m)
        or _OTHER_COLOURS[zlib.crc32(m.encode()) % len(_OTHER_COLOURS)]
        for m in mixer_order(mixers)
    }


# ----------------------------------------------------------------------
# Helpers


def _require(table: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} table is missing column(s): {', '.join(missing)}")


def _fmt(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_missing(value: object) -> bool:
    return value is None or (
        isinstance(value, (float, np.floating)) and math.isnan(value)
    )


def _describe(column: str, value: object) -> str:
    """A short facet title / legend label for one coordinate value."""
    if column == "language":
        return str(value)
    if column == "n_layers":
        return f"{_fmt(value)} layer" + ("" if value == 1 else "s")
    if column == "d_model":
        return f"d_model={_fmt(value)}"
    if column == "layer":
        return f"layer {_fmt(value)}"
    if column == "pos_embed":
        return "learned pos." if value else "NoPE"
    if column == "mixer":
        return str(value)
    short = column.rsplit(".", 1)[-1]
    return f"{short}=n/a" if _is_missing(value) else f"{short}={_fmt(value)}"


def _labels(table: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.Series, list[str]]:
    """Per row, a label of its values in those ``columns`` that vary in ``table``
    (joined with " · "), and the distinct labels in the sorted order of the values."""
    varying = [
        c for c in columns if c in table.columns and table[c].nunique(dropna=False) > 1
    ]
    if not varying:
        return pd.Series("", index=table.index, dtype=object), [""]

    def label(row: Iterable[object]) -> str:
        return " · ".join(_describe(c, v) for c, v in zip(varying, row))

    labels = pd.Series(
        [label(row) for row in table[varying].itertuples(index=False)],
        index=table.index,
        dtype=object,
    )
    keys = _sort_keys(table[varying].drop_duplicates(), na_position="last")
    return labels, list(
        dict.fromkeys(label(row) for row in keys.itertuples(index=False))
    )


def _sort_keys(keys: pd.DataFrame, na_position: str) -> pd.DataFrame:
    """``keys`` sorted by all its columns, mixers in ``mixer_order`` (columns of values
    that do not compare, e.g. numbers and strings, are sorted as strings)."""

    def key(column: pd.Series) -> pd.Series:
        if column.name == "mixer":
            rank = {m: i for i, m in enumerate(mixer_order(column))}
            return column.map(rank)
        return column

    columns = list(keys.columns)
    try:
        return keys.sort_values(columns, key=key, na_position=na_position)
    except TypeError:
        return keys.sort_values(
            columns, key=lambda c: key(c).astype(str), na_position=na_position
        )


def sweep_axes(table: pd.DataFrame) -> list[str]:
    """The columns of a study table taken for sweep axes beyond the standard
    coordinates."""
    return [
        c
        for c in table.columns
        if c not in _NOT_AXES and not str(c).startswith("attrib@")
    ]


def _variants(table: pd.DataFrame) -> tuple[pd.Series, dict[str, str]]:
    """Per row, a label of the other sweep axes that vary (missing values left out), and
    a marker per label ("" is the label of rows with none)."""
    varying = [c for c in sweep_axes(table) if table[c].nunique(dropna=False) > 1]
    if not varying:
        return pd.Series("", index=table.index, dtype=object), {"": "o"}

    def label(row: Iterable[object]) -> str:
        return ", ".join(
            _describe(c, v) for c, v in zip(varying, row) if not _is_missing(v)
        )

    labels = pd.Series(
        [label(row) for row in table[varying].itertuples(index=False)],
        index=table.index,
        dtype=object,
    )
    keys = _sort_keys(table[varying].drop_duplicates(), na_position="first")
    order = list(dict.fromkeys(label(row) for row in keys.itertuples(index=False)))
    return labels, {name: _MARKERS[i % len(_MARKERS)] for i, name in enumerate(order)}


def _one_metric(
    table: pd.DataFrame, metric: str | None, name: str
) -> tuple[pd.DataFrame, str]:
    """The rows of one metric: ``metric``, or the only one present."""
    if "metric" not in table.columns:
        return table, metric or "accuracy"
    present = list(dict.fromkeys(table["metric"]))
    if metric is None:
        if len(present) > 1:
            raise ValueError(
                f"{name} table has several metrics {present}; choose one with metric="
            )
        metric = present[0] if present else "accuracy"
    return table[table["metric"] == metric], metric


def _last_layer(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["layer"] == table.groupby("run")["layer"].transform("max")]


def _selected(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["selected"].astype(bool)]


@contextmanager
def _style(style: str = "whitegrid") -> Iterator[None]:
    """seaborn's paper theme for the duration of a ``with`` block (matplotlib's
    rcParams are restored on exit)."""
    with mpl.rc_context():
        sns.set_theme(style=style, context="paper", font_scale=0.95)
        yield


def _subplots(
    n_rows: int, n_cols: int, width: float, height: float, **kwargs: object
) -> tuple[Figure, np.ndarray]:
    fig = Figure(
        figsize=(width * n_cols + 1.6, height * n_rows + 0.3), layout="constrained"
    )
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **kwargs)
    return fig, axes


def _empty(message: str) -> Figure:
    fig = Figure(figsize=(4, 1.5), layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def _save(
    fig: Figure,
    table: pd.DataFrame,
    table_out: PathLike,
    figure_outs: Sequence[PathLike],
) -> pd.DataFrame:
    table = table.reset_index(drop=True)
    write_table(table, table_out)
    for path in figure_outs:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return table


def _header(text: str) -> Line2D:
    """A legend entry with no handle, used as a section title."""
    return Line2D([], [], linestyle="none", marker="none", label=text, gid="header")


def _figure_legend(fig: Figure, handles: Sequence[object]) -> None:
    """``handles`` as one legend right of the axes, section titles in bold."""
    legend = fig.legend(
        handles=handles, loc="outside right upper", frameon=False, fontsize="small"
    )
    for handle, text in zip(handles, legend.get_texts()):
        if getattr(handle, "get_gid", lambda: None)() == "header":
            text.set_fontweight("bold")


def _legend(
    fig: Figure,
    mixers: Iterable[str],
    *,
    positions: Iterable[bool] = (),
    variants: dict[str, str] | None = None,
    lines: bool = True,
    extra: Sequence[object] = (),
) -> None:
    """One legend beside the figure: mixer colours, then positions and other sweep axes
    where they vary, then ``extra`` handles."""
    handles: list[object] = [_header("mixer")]
    for mixer, colour in mixer_palette(mixers).items():
        handles.append(
            Line2D(
                [],
                [],
                color=colour,
                marker="o",
                linestyle="-" if lines else "none",
                label=mixer,
            )
        )
    positions = sorted(set(bool(p) for p in positions))
    if len(positions) > 1 or positions == [True]:
        handles.append(_header("positions"))
        for pos in positions:
            if lines:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="0.2",
                        linestyle="--" if pos else "-",
                        label=_describe("pos_embed", pos),
                    )
                )
            else:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="0.2",
                        marker="o",
                        linestyle="none",
                        markerfacecolor="none" if pos else "0.2",
                        label=_describe("pos_embed", pos),
                    )
                )
    named = {k: v for k, v in (variants or {}).items() if k}
    if named:
        handles.append(_header("variant"))
        for name, marker in named.items():
            handles.append(
                Line2D([], [], color="0.2", marker=marker, linestyle="none", label=name)
            )
    handles.extend(extra)
    _figure_legend(fig, handles)


def _set_titles(axes: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> None:
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            title = " · ".join(t for t in (row, col) if t)
            axes[i, j].set_title(title, fontsize="medium")


def _references(ax: object, *, x: bool = False, y: bool = True) -> None:
    for level in (0.0, 1.0):
        if y:
            ax.axhline(level, **_REFERENCE)
        if x:
            ax.axvline(level, **_REFERENCE)


def _band_line(ax: object, line: pd.DataFrame, x: str, band: tuple[str, str], colour: str,
               learned_positions: bool, **style: object) -> None:
    """``line``'s ``mean`` against ``x`` with a shaded band between the ``band`` columns; dashed
    for learned positions, solid for NoPE."""
    line = line.sort_values(x)
    ax.fill_between(line[x], line[band[0]], line[band[1]], color=colour, alpha=_CI_ALPHA, linewidth=0)
    ax.plot(line[x], line["mean"], color=colour, linestyle="--" if learned_positions else "-", **style)


def _width_axis(ax: object, widths: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(widths), [_fmt(w) for w in widths])
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    if len(widths) == 1:
        ax.set_xlim(widths[0] / 1.5, widths[0] * 1.5)


# ----------------------------------------------------------------------
# The paper's numbers beside ours

_PAPER_MARKER = {"marker": "D", "s": 34, "edgecolors": "black", "linewidths": 1.1, "zorder": 6}
_PAPER_MAX_LINE = {"linestyle": (0, (1, 1.5)), "linewidth": 1.4, "zorder": 2}


def _paper_rows(reference: pd.DataFrame | None, table: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """The rows of ``reference`` on ``table``'s axes: its ``metric``, and a configuration of
    ``table`` with the row's language and mixer, and its layer count and positions where the
    row names them (None without a reference)."""
    if reference is None:
        return None
    _require(reference, ["language", "mixer", "n_layers", "pos_embed", "split", "readout", "metric", "statistic",
                         "value"], "reference")
    keys = ["language", "mixer", "n_layers", "pos_embed"]
    ours = table[keys].drop_duplicates().to_dict("records")

    def drawn(row: dict[str, object]) -> bool:  # a missing value in the row matches any
        return any(all(pd.isna(row[k]) or row[k] == config[k] for k in keys) for config in ours)

    rows = reference[reference["metric"] == metric]
    return rows[pd.Series([drawn(row) for row in rows.to_dict("records")], index=rows.index, dtype=bool)]


def _paper_panels(rows: pd.DataFrame | None, draw: pd.DataFrame, row_order: list[str],
                  col_order: list[str]) -> Iterator[tuple[int, int, dict[str, object]]]:
    """Each reference row with the panel (row and column index) it is drawn in: its
    language's row of panels, its layer count's column (every column where it names none)."""
    if rows is None:
        return
    row_of = dict(zip(draw["language"], draw["_row"]))
    col_of = dict(zip(draw["n_layers"], draw["_col"]))
    for row in rows.to_dict("records"):
        cols = col_order if pd.isna(row["n_layers"]) else [col_of.get(row["n_layers"])]
        for col in cols:
            if col in col_order and row_of.get(row["language"]) in row_order:
                yield row_order.index(row_of[row["language"]]), col_order.index(col), row


def _learned_positions(row: dict[str, object]) -> bool:
    learned = row["pos_embed"]
    return learned is not None and not pd.isna(learned) and bool(learned)


def _paper_point(ax: object, x: float, row: dict[str, object], colour: str) -> None:
    """A black-edged diamond in the mixer's colour, with a white centre for learned positions
    (a hollow marker would lose the colour)."""
    ax.scatter([x], [row["value"]], facecolors=colour, **_PAPER_MARKER)
    if _learned_positions(row):
        ax.scatter([x], [row["value"]], marker=".", s=14, color="white", linewidths=0, zorder=7)


def _paper_legend(rows: pd.DataFrame) -> list[object]:
    if rows is None or rows.empty:
        return []
    handles: list[object] = [_header("paper (arXiv 2505.15105)")]
    points = rows[rows["statistic"] != "max_over_widths"]
    diamond = {"marker": "D", "markersize": 5, "markerfacecolor": "0.6", "markeredgecolor": "black", "linestyle": "none"}
    if len(points):
        learned = any(_learned_positions(row) for row in points.to_dict("records"))
        handles.append(Line2D([], [], label="paper" + ("\n(white centre: learned pos.)" if learned else ""), **diamond))
    if (rows["statistic"] == "max_over_widths").any():
        handles.append(Line2D([], [], color="0.3", label="paper: best over widths", **_PAPER_MAX_LINE))
    return handles


def _with_paper(table: pd.DataFrame, rows: pd.DataFrame | None, value: str) -> pd.DataFrame:
    """``table`` marked ``source="ours"`` followed by the reference ``rows`` drawn beside it
    (``source="paper"``, the number in column ``value``, the row's split as ``paper_split``);
    ``table`` unchanged without a reference."""
    if rows is None:
        return table
    ours = table.assign(source="ours")
    if rows.empty:
        return ours
    theirs = rows.rename(columns={"value": value, "split": "paper_split"}).assign(source="paper")
    return pd.concat([ours, theirs], ignore_index=True)


# ----------------------------------------------------------------------
# Figures


def accuracy_vs_width(
    selection: pd.DataFrame,
    table_out: PathLike,
    figure_outs: Sequence[PathLike],
    *,
    metric: str | None = None,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Accuracy at the selected learning rate against width: the mean over seeds on the
    report split with its 95% interval as a band, one line per mixer (solid NoPE, dashed
    learned positions), d_model on a log2 axis; columns by ``n_layers``, rows by
    ``language``.

    ``selection``: the selection table (one row per configuration). ``metric``: which
    metric's rows to draw; by default the only one present (a ValueError if there are
    several). ``reference``: the paper's numbers (``tinylang.figures.reference``), drawn
    where they match (that metric, a language, mixer, layer count and positions drawn, the
    report split or none named), at their widths (which join the axis). Saves and returns
    the rows drawn (``selection`` restricted to that metric; with a reference, followed by
    the paper's rows and marked by ``source``)."""
    _require(
        selection,
        [
            "language",
            "mixer",
            "d_model",
            "n_layers",
            "pos_embed",
            "mean",
            "ci_low",
            "ci_high",
        ],
        "selection",
    )
    table, metric = _one_metric(selection, metric, "selection")
    with _style():
        if table.empty:
            return _save(
                _empty(f"no {metric} rows to draw"), table, table_out, figure_outs
            )
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        variants, markers = _variants(table)
        draw = table.assign(_row=rows, _col=cols, _variant=variants)
        palette = mixer_palette(table["mixer"])
        paper = _paper_rows(reference, table, metric)
        if paper is not None and "report_split" in table:
            paper = paper[paper["split"].isna() | paper["split"].isin(table["report_split"])]
        paper_widths = [] if paper is None else paper["d_model"].dropna().astype(int).tolist()
        widths = sorted({int(w) for w in table["d_model"].unique()} | set(paper_widths))
        fig, axes = _subplots(
            len(row_order), len(col_order), 2.9, 2.3, sharex=True, sharey=True
        )
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            for (mixer, pos, variant), line in panel.groupby(
                ["mixer", "pos_embed", "_variant"], sort=False
            ):
                _band_line(ax, line, "d_model", ("ci_low", "ci_high"), palette[mixer], pos,
                           marker=markers[variant], markersize=4)
        for i, j, row in _paper_panels(paper, draw, row_order, col_order):
            ax, colour = axes[i, j], palette[row["mixer"]]
            if row["statistic"] == "max_over_widths":
                ax.axhline(row["value"], color=colour, **_PAPER_MAX_LINE)
            else:
                _paper_point(ax, row["d_model"], row, colour)
        split = (
            ", ".join(dict.fromkeys(table["report_split"]))
            if "report_split" in table
            else ""
        )
        for ax in axes.flat:
            _width_axis(ax, widths)
            ax.set_ylim(0, 1.02)
        for ax in axes[-1, :]:
            ax.set_xlabel("d_model")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"{metric} ({split})" if split else metric)
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
        return _save(fig, _with_paper(table, paper, "mean"), table_out, figure_outs)


def _headline_rows(
    mechanism: pd.DataFrame,
    component: str = HEADLINE_COMPONENT,
    corrupted: str = HEADLINE_CORRUPTED,
    *,
    kept_only: bool = True,
    every_split: bool = False,
) -> pd.DataFrame:
    """The mechanism rows of one readout ``component`` with ``corrupted`` corrupted (tables
    without those columns hold one of each), only the runs the gap filter kept by default, of
    one split (``report_split``) unless ``every_split``."""
    rows = mechanism if every_split else report_split(mechanism)
    if "component" in rows.columns:
        rows = rows[rows["component"] == component]
    if "corrupted" in rows.columns:
        rows = rows[rows["corrupted"] == corrupted]
    return rows[rows["kept"].astype(bool)] if kept_only else rows


def _dropped_notes(axes: np.ndarray, every: pd.DataFrame, row_order: list[str], col_order: list[str]) -> None:
    """Say in a corner of each panel how many of its runs (``every``: the rows of all runs,
    kept or not) the gap filter dropped."""
    every = every.drop_duplicates("run")
    threshold = f"gap ≤ {_fmt(every['min_gap'].iloc[0])}" if "min_gap" in every and len(every) else "no gap"
    rows, _ = _labels(every, ["language"])
    cols, _ = _labels(every, ["n_layers"])
    for (row, col), panel in every.groupby([rows, cols], sort=False):
        dropped = int((~panel["kept"].astype(bool)).sum())
        if dropped and row in row_order and col in col_order:
            ax = axes[row_order.index(row), col_order.index(col)]
            ax.text(0.98, 0.02, f"{dropped} of {len(panel)} runs dropped ({threshold})", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=6, color="0.35")


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
    table_out: PathLike,
    figure_outs: Sequence[PathLike],
    *,
    x: str = "@Value",
    y: str = "@Query",
) -> pd.DataFrame:
    """Where each run reads the association: one point per run the gap filter kept, over
    every learning rate and width (as the paper's scatter), its Attrib at the last layer's
    block input at readout ``x`` (default @Value) against ``y`` (default @Query), in-context
    key corrupted; colour by mixer, hollow markers for learned positions, marker shape by
    other sweep axes; reference lines at 0 and 1; each panel says how many runs the filter
    dropped. Columns by ``n_layers``, rows by ``language``.

    For one-layer models the last layer's block input is the embedding, so @Value and
    @Query are 0 by construction there: ``mechanism_layers`` reads those models.

    Saves and returns the points (``mechanism_points``)."""
    _require(
        mechanism, [*COORDINATES, "layer", "readout", "attrib", "kept"], "mechanism"
    )
    table = mechanism_points(mechanism)
    xcol, ycol = f"attrib{x}", f"attrib{y}"
    with _style():
        if table.empty or xcol not in table or ycol not in table:
            return _save(
                _empty(f"no kept runs with Attrib at {x} and {y}"),
                table,
                table_out,
                figure_outs,
            )
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        variants, markers = _variants(table)
        draw = table.assign(_row=rows, _col=cols, _variant=variants)
        palette = mixer_palette(table["mixer"])
        fig, axes = _subplots(
            len(row_order), len(col_order), 2.7, 2.5, sharex=True, sharey=True
        )
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            for (mixer, pos, variant), points in panel.groupby(
                ["mixer", "pos_embed", "_variant"], sort=False
            ):
                colour = palette[mixer]
                ax.scatter(
                    points[xcol],
                    points[ycol],
                    s=22,
                    marker=markers[variant],
                    linewidths=1.0,
                    facecolors="none" if pos else colour,
                    edgecolors=colour,
                    alpha=0.8,
                    zorder=3,
                )
        _dropped_notes(axes, _headline_rows(mechanism, kept_only=False), row_order, col_order)
        for ax in axes.flat:
            _references(ax, x=True, y=True)
        for ax in axes[-1, :]:
            ax.set_xlabel(f"Attrib {x}")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"Attrib {y}")
        _set_titles(axes, row_order, col_order)
        _legend(
            fig,
            table["mixer"],
            positions=table["pos_embed"],
            variants=markers,
            lines=False,
        )
        return _save(fig, table, table_out, figure_outs)


def _by_labels(table: pd.DataFrame, by: str) -> tuple[pd.Series, list[str]]:
    """Labels of the values of ``by`` (missing ones "n/a", last), in value order."""
    values = table[by]
    labels = values.map(lambda v: "n/a" if _is_missing(v) else _fmt(v))
    order = [_fmt(v) for v in sorted(values.dropna().unique())]
    if values.isna().any():
        order.append("n/a")
    return labels, order


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
    table_out: PathLike,
    figure_outs: Sequence[PathLike],
    *,
    by: str | None = None,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The paper's Attrib at @Key, @Query and @Value of every run the gap filter kept (over
    all learning rates, widths and seeds) as box plots over runs (median, quartiles), read
    at the last layer's block input with the in-context key corrupted; reference lines at 0
    (nothing restored) and 1 (all restored).

    ``by=None``: x = readout, colour = mixer, at each run's last layer; columns by
    ``n_layers``, rows by ``language`` (where they vary).

    ``reference``: the paper's Attrib values (``tinylang.figures.reference``), drawn with
    ``by=None`` beside the boxes of their mixer and readout where the language, mixer and
    layer count match.

    ``by="<column>"`` splits on that column instead: colour = its values (missing
    values, such as an argument a mixer does not have, shown as "n/a"), one column of
    panels per mixer, rows by ``language`` / ``n_layers`` (where they vary, unless
    ``by`` is one of them). Examples: ``by="mixer_args.d_conv"`` (Mamba per convolution
    width), ``by="d_model"`` (per width), and ``by="layer"``, which draws every layer
    rather than only the last one.

    Saves and returns the rows drawn: the kept runs' rows at their last layer (every layer
    with ``by="layer"``), NaN Attrib left out; with a reference (``by=None``), followed by
    the paper's rows and marked by ``source``."""
    _require(
        mechanism, [*COORDINATES, "layer", "readout", "attrib", "kept"], "mechanism"
    )
    if by is not None:
        _require(mechanism, [by], "mechanism")
        if by in ("mixer", "readout", "attrib", "example", "run", "selected", "kept"):
            raise ValueError(f"mechanism_boxes cannot split by {by!r}")
    rows = _headline_rows(mechanism, every_split=by == "split")
    if by != "layer":
        rows = _last_layer(rows)
    table = rows[rows["attrib"].notna()]
    with _style():
        if table.empty:
            return _save(
                _empty("no kept runs with Attrib"), table, table_out, figure_outs
            )
        readouts = [r for r in READOUTS if r in set(table["readout"])] + sorted(
            set(table["readout"]) - set(READOUTS)
        )
        if by is None:
            hue, hue_order = table["mixer"], mixer_order(table["mixer"])
            palette = mixer_palette(table["mixer"])
            rows_, row_order = _labels(table, ["language"])
            cols, col_order = _labels(table, ["n_layers"])
        else:
            hue, hue_order = _by_labels(table, by)
            colours = sns.color_palette("viridis", len(hue_order)).as_hex()
            palette = {
                h: ("#9e9e9e" if h == "n/a" else c) for h, c in zip(hue_order, colours)
            }
            rows_, row_order = _labels(
                table, [c for c in ("language", "n_layers") if c != by]
            )
            cols, col_order = _labels(table, ["mixer"])
            if col_order == [""]:  # one mixer: still name it
                cols = pd.Series(table["mixer"].astype(str), index=table.index)
                col_order = [str(table["mixer"].iloc[0])]
        draw = table.assign(_row=rows_, _col=cols, _hue=hue)
        width = 0.9 + 0.35 * len(readouts) * len(hue_order)
        fig, axes = _subplots(
            len(row_order),
            len(col_order),
            max(2.6, width),
            2.5,
            sharex=True,
            sharey=True,
        )
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            # seaborn 0.13 passes `vert`, deprecated in matplotlib 3.11
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "vert: bool was deprecated")
                sns.boxplot(
                    panel,
                    x="readout",
                    y="attrib",
                    hue="_hue",
                    order=readouts,
                    hue_order=[h for h in hue_order if h in set(panel["_hue"])],
                    palette=palette,
                    fliersize=1,
                    linewidth=0.7,
                    width=0.8,
                    legend=False,
                    ax=ax,
                )
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
            return _save(fig, _with_paper(table, paper, "attrib"), table_out, figure_outs)
        else:
            handles = [_header(by.rsplit(".", 1)[-1])]
            handles += [
                Patch(facecolor=palette[h], edgecolor="0.3", label=h) for h in hue_order
            ]
            _figure_legend(fig, handles)
        return _save(fig, table, table_out, figure_outs)


def mechanism_layers(
    mechanism: pd.DataFrame,
    table_out: PathLike,
    figure_outs: Sequence[PathLike],
    *,
    component: str = LAYER_COMPONENT,
    readout: str = LAYER_READOUT,
) -> pd.DataFrame:
    """The per-layer readout (the paper's layer figure): the Attrib of the sequence mixer's
    output (``component``, default ``mixer_output``) at the query (``readout``, default
    @Query) at every layer, in-context key corrupted, for every run the gap filter kept: one
    point per run and layer (colour by mixer, hollow for learned positions, mixers side by
    side), a line through each mixer's median per layer; columns by ``n_layers``, rows by
    ``language``; each panel says how many runs the filter dropped. For a one-layer model
    this is the one place the context reaches the query, so the readout is not a no-op.

    Saves and returns the rows drawn (NaN Attrib left out)."""
    _require(
        mechanism, [*COORDINATES, "layer", "readout", "attrib", "kept"], "mechanism"
    )
    every = _headline_rows(mechanism, component, kept_only=False)
    every = every[every["readout"] == readout]
    table = every[every["kept"].astype(bool) & every["attrib"].notna()]
    with _style():
        if table.empty:
            message = f"no kept runs with Attrib of {component} at {readout} (does the interventions evaluator compute it?)"
            return _save(_empty(message), table, table_out, figure_outs)
        rows, row_order = _labels(table, ["language"])
        cols, col_order = _labels(table, ["n_layers"])
        draw = table.assign(_row=rows, _col=cols)
        mixers = mixer_order(table["mixer"])
        palette = mixer_palette(mixers)
        offsets = dict(zip(mixers, np.linspace(-0.25, 0.25, len(mixers)) if len(mixers) > 1 else [0.0]))
        layers = sorted(table["layer"].unique())
        fig, axes = _subplots(
            len(row_order), len(col_order), 2.4 + 0.5 * len(layers), 2.5, sharey=True
        )
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
        return _save(fig, table, table_out, figure_outs)


def _quantity_order(quantities: Iterable[str]) -> list[str]:
    present = set(quantities)
    return [q for q in QUANTITIES if q in present] + sorted(present - set(QUANTITIES))


def training_curves(
    curves: pd.DataFrame, table_out: PathLike, figure_outs: Sequence[PathLike]
) -> pd.DataFrame:
    """Accuracy (report split) and the headline Attrib at @Key/@Query/@Value (NaN, so
    not drawn, at steps where the gap filter drops a run) against training step for the
    selected runs: one line per configuration, the mean over seeds
    with the seeds' min–max range as a band; columns by quantity, rows by ``language`` /
    ``n_layers`` / ``d_model`` (where they vary); colour by mixer, dashed for learned
    positions.

    Saves and returns the drawn table: the configuration columns (every column but
    ``run, seed, step, quantity, value, selected``), ``quantity, step`` and ``mean, min,
    max, n_seeds`` over the selected seeds."""
    _require(curves, [*COORDINATES, "step", "quantity", "value", "selected"], "curves")
    rows = _selected(curves)
    config = [
        c
        for c in rows.columns
        if c not in ("run", "seed", "step", "quantity", "value", "selected")
    ]
    table = (
        rows.groupby([*config, "quantity", "step"], dropna=False, sort=True)["value"]
        .agg(mean="mean", min="min", max="max", n_seeds="count")
        .reset_index()
    )
    with _style():
        if table.empty:
            return _save(_empty("no selected runs"), table, table_out, figure_outs)
        quantities = _quantity_order(table["quantity"])
        rows_, row_order = _labels(table, ["language", "n_layers", "d_model"])
        variants, markers = _variants(table)
        draw = table.assign(_row=rows_, _variant=variants)
        palette = mixer_palette(table["mixer"])
        fig, axes = _subplots(
            len(row_order), len(quantities), 2.4, 1.8, sharex=True, sharey="col"
        )
        for (row, quantity), panel in draw.groupby(["_row", "quantity"], sort=False):
            ax = axes[row_order.index(row), quantities.index(quantity)]
            for (mixer, pos, variant), line in panel.groupby(
                ["mixer", "pos_embed", "_variant"], sort=False
            ):
                _band_line(ax, line, "step", ("min", "max"), palette[mixer], pos, linewidth=1.2,
                           marker=markers[variant], markersize=3, markevery=max(1, len(line) // 6))
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
            axes[0, j].set_title(
                quantity.replace("attrib@", "attrib @"), fontsize="medium"
            )
            axes[-1, j].set_xlabel("step")
        for i, row in enumerate(row_order):
            axes[i, 0].set_ylabel(row or "value", fontsize="small")
        band = Patch(color="0.3", alpha=_CI_ALPHA * 2, linewidth=0, label="seed range")
        _legend(
            fig,
            table["mixer"],
            positions=table["pos_embed"],
            variants=markers,
            extra=[_header(""), band],
        )
        return _save(fig, table, table_out, figure_outs)


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
    table_out: PathLike,
    figure_outs: Sequence[PathLike],
    *,
    x_split: str = "dev",
    y_split: str = "test",
    metric: str | None = None,
) -> pd.DataFrame:
    """Does selection on ``x_split`` carry over to ``y_split``? Every run's final
    accuracy on ``x_split`` (default dev) against ``y_split`` (default test) as a faint
    point, the selected runs as stronger points, and per mixer (and positions / other
    sweep axes) a line through the selected runs' means over seeds ordered by d_model
    (the smallest and largest widths written beside its ends); the diagonal for
    reference. Columns by ``n_layers``, rows by
    ``language``.

    ``metric``: which metric's rows; by default the only one present. Saves and returns
    the per-run table (``generalisation_table``): one row per run with both splits, the
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
            return _save(_empty(message), table, table_out, figure_outs)
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
        fig, axes = _subplots(
            len(row_order), len(col_order), 3.2, 3.2, sharex=True, sharey=True
        )
        for (row, col), panel in draw.groupby(["_row", "_col"], sort=False):
            ax = axes[row_order.index(row), col_order.index(col)]
            for (mixer, pos, variant, chosen), points in panel.groupby(
                ["mixer", "pos_embed", "_variant", "_selected"], sort=False
            ):
                colour = palette[mixer]
                face = "none" if pos else colour
                if not chosen:
                    ax.scatter(
                        points[x_split],
                        points[y_split],
                        s=9,
                        marker=markers[variant],
                        facecolors=face,
                        edgecolors=colour,
                        linewidths=0.6,
                        alpha=0.3,
                        zorder=2,
                    )
                    continue
                ax.scatter(
                    points[x_split],
                    points[y_split],
                    s=12,
                    marker=markers[variant],
                    facecolors=face,
                    edgecolors=colour,
                    linewidths=0.8,
                    alpha=0.6,
                    zorder=3,
                )
                means = (
                    points.groupby("d_model")[[x_split, y_split]].mean().sort_index()
                )
                ax.plot(
                    means[x_split],
                    means[y_split],
                    color=colour,
                    linestyle="--" if pos else "-",
                    linewidth=1.2,
                    marker=markers[variant],
                    markersize=4,
                    markerfacecolor="white" if pos else colour,
                    zorder=4,
                )
                ends = means.iloc[[0, -1]] if len(means) > 1 else means
                for d_model, (mx, my) in ends.iterrows():
                    ax.annotate(
                        _fmt(d_model),
                        (mx, my),
                        xytext=(4, -6),
                        textcoords="offset points",
                        fontsize=6,
                        color=colour,
                        zorder=5,
                        path_effects=[withStroke(linewidth=2, foreground="white")],
                    )
        for ax in axes.flat:
            ax.plot([0, 1], [0, 1], **_REFERENCE)
            ax.set_xlim(-0.03, 1.03)
            ax.set_ylim(-0.03, 1.03)
            ax.set_aspect("equal")
        for ax in axes[-1, :]:
            ax.set_xlabel(f"{metric} ({x_split})")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"{metric} ({y_split})")
        _set_titles(axes, row_order, col_order)
        runs = [
            _header(""),
            Line2D(
                [],
                [],
                color="0.2",
                marker="o",
                linestyle="-",
                markersize=4,
                label="selected lr: runs, and\nseed means by d_model",
            ),
            Line2D(
                [],
                [],
                color="0.2",
                marker="o",
                linestyle="none",
                alpha=0.3,
                markersize=3,
                label="other learning rates",
            ),
        ]
        _legend(
            fig,
            table["mixer"],
            positions=table["pos_embed"],
            variants=markers,
            lines=False,
            extra=runs,
        )
        return _save(fig, table, table_out, figure_outs)


__all__ = [
    "COORDINATES",
    "MIXER_ORDER",
    "QUANTITIES",
    "READOUTS",
    "accuracy_vs_width",
    "generalisation",
    "generalisation_table",
    "mechanism_boxes",
    "mechanism_layers",
    "mechanism_points",
    "mechanism_scatter",
    "mixer_order",
    "mixer_palette",
    "sweep_axes",
    "training_curves",
]
