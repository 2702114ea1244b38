"""The look every figure shares: the ``Plot`` each drawing function returns, fixed mixer
colours and order, facets, labels of sweep axes, legends, the paper's reference points, and
the readout rows the mechanism figures draw. Private to ``tinylang.figures``."""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D

from tinylang.study.run_tables import report_split
from tinylang.study.runs import COORDINATES


class Plot(NamedTuple):
    """A drawn figure (or the subfigure it was drawn into) and the tidy table it shows."""

    figure: Figure | SubFigure
    table: pd.DataFrame


FigureLike = Figure | SubFigure


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
def _style(style: str = "whitegrid", font_scale: float = 0.95) -> Iterator[None]:
    """seaborn's paper theme for the duration of a ``with`` block (matplotlib's
    rcParams are restored on exit)."""
    with mpl.rc_context():
        sns.set_theme(style=style, context="paper", font_scale=font_scale)
        yield


def _subplots(
    n_rows: int,
    n_cols: int,
    width: float,
    height: float,
    *,
    fig: FigureLike | None = None,
    ax: Axes | None = None,
    pad: tuple[float, float] = (1.6, 0.3),
    **kwargs: object,
) -> tuple[FigureLike, np.ndarray]:
    """A grid of panels in ``fig``; when None, in a new figure of panels ``width`` ×
    ``height`` inches plus ``pad`` (room for the legend and titles). With ``ax``, that
    one panel and its figure."""
    if ax is not None:
        return ax.figure, np.array([[ax]])
    if fig is None:
        size = (width * n_cols + pad[0], height * n_rows + pad[1])
        fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **kwargs)
    for panel in axes.flat:
        _fix_tick_space(panel)
    return fig, axes


def _fix_tick_space(ax: Axes) -> None:
    # How many ticks fit is worked out at draw time from the rc tick label size: pin the
    # style's size so a figure saved after the style's context ends keeps its ticks.
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        size = FontProperties(size=mpl.rcParams[f"{name}tick.labelsize"]).get_size_in_points()
        axis.set_tick_params(labelsize=size)


def _empty(message: str, fig: FigureLike | None = None, ax: Axes | None = None) -> FigureLike:
    """A figure (or ``fig``, or ``ax``) that only says ``message``."""
    fig, axes = _subplots(1, 1, 4, 1.5, fig=fig, ax=ax, pad=(0, 0))
    axes[0, 0].text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    axes[0, 0].set_axis_off()
    return fig


def _plot(fig: FigureLike, table: pd.DataFrame) -> Plot:
    return Plot(fig, table.reset_index(drop=True))


def _boxplot(**kwargs: object) -> None:
    # seaborn 0.13 passes `vert`, deprecated in matplotlib 3.11
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "vert: bool was deprecated")
        sns.boxplot(**kwargs)


def _header(text: str) -> Line2D:
    """A legend entry with no handle, used as a section title."""
    return Line2D([], [], linestyle="none", marker="none", label=text, gid="header")


def _figure_legend(fig: FigureLike, handles: Sequence[object]) -> None:
    """``handles`` as one legend right of the axes, section titles in bold."""
    legend = fig.legend(
        handles=handles, loc="outside right upper", frameon=False, fontsize="small"
    )
    for handle, text in zip(handles, legend.get_texts()):
        if getattr(handle, "get_gid", lambda: None)() == "header":
            text.set_fontweight("bold")


def _legend(
    fig: FigureLike,
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
               learned_positions: bool, limits: tuple[float, float] | None = None, **style: object) -> None:
    """``line``'s ``mean`` against ``x`` with a shaded band between the ``band`` columns, cut to
    ``limits`` where given (a t interval over two seeds can pass 1 for an accuracy); dashed for
    learned positions, solid for NoPE."""
    line = line.sort_values(x)
    low, high = line[band[0]], line[band[1]]
    if limits is not None:
        low, high = low.clip(*limits), high.clip(*limits)
    ax.fill_between(line[x], low, high, color=colour, alpha=_CI_ALPHA, linewidth=0)
    ax.plot(line[x], line["mean"], color=colour, linestyle="--" if learned_positions else "-", **style)


def _width_axis(ax: object, widths: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(widths), [_fmt(w) for w in widths])
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    if len(widths) == 1:
        ax.set_xlim(widths[0] / 1.5, widths[0] * 1.5)

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


def _by_labels(table: pd.DataFrame, by: str) -> tuple[pd.Series, list[str]]:
    """Labels of the values of ``by`` (missing ones "n/a", last), in value order."""
    values = table[by]
    labels = values.map(lambda v: "n/a" if _is_missing(v) else _fmt(v))
    order = [_fmt(v) for v in sorted(values.dropna().unique())]
    if values.isna().any():
        order.append("n/a")
    return labels, order
