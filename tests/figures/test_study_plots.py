"""Study figures: each draws from a synthetic study table and returns a Plot, the figure
and the table it drew, writing no file; figures compose into one through ``fig=``."""

from __future__ import annotations

import io
import math

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tinylang.figures import study_plots as sp
from tinylang.figures._study_style import _style

MIXERS = ("attention", "mamba")
WIDTHS = (16, 32)
LRS = (0.001, 0.01)
SEEDS = (0, 1)
BEST_LR = {"attention": 0.01, "mamba": 0.001}
READOUTS = ("@Key", "@Query", "@Value")


def run_coords(n_layers=(2,), d_conv=False):
    rows = []
    for mixer in MIXERS:
        for layers in n_layers:
            for d_model in WIDTHS:
                for lr in LRS:
                    for seed in SEEDS:
                        row = {
                            "run": f"ar-{mixer}-L{layers}-d{d_model}-lr{lr}-s{seed}",
                            "language": "ar",
                            "mixer": mixer,
                            "d_model": d_model,
                            "n_layers": layers,
                            "pos_embed": mixer == "attention",
                            "lr": lr,
                            "seed": seed,
                        }
                        if d_conv:  # attention has no convolution: a missing value
                            row["mixer_args.d_conv"] = (
                                4.0 if mixer == "mamba" else math.nan
                            )
                        rows.append(row)
    runs = pd.DataFrame(rows)
    runs["selected"] = runs["lr"] == runs["mixer"].map(BEST_LR)
    return runs


def selection_table(**kwargs):
    runs = run_coords(**kwargs)
    chosen = (
        runs[runs["selected"]]
        .drop(columns=["run", "seed", "selected"])
        .drop_duplicates()
    )
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.3, 0.9, len(chosen))
    return chosen.assign(
        select_split="dev",
        report_split="test",
        metric="accuracy",
        mean=mean,
        ci_low=mean - 0.1,
        ci_high=mean + 0.1,
        n_seeds=2,
    ).reset_index(drop=True)


def run_accuracy_table(**kwargs):
    runs = run_coords(**kwargs)
    rng = np.random.default_rng(1)
    frames = [
        runs.assign(
            step=100, split=split, metric="accuracy", value=rng.uniform(0, 1, len(runs))
        )
        for split in ("dev", "test")
    ]
    return pd.concat(frames, ignore_index=True)


DROPPED = {("mamba", 0.01, 1)}  # (mixer, lr, seed) of the runs the gap filter drops


def mechanism_table(**kwargs):
    """A mechanism study table: per run, the Attrib of each readout of block_input and
    mixer_output at every layer (one NaN: a zero gap), with the run filter's ``kept``."""
    runs = run_coords(**kwargs)
    rng = np.random.default_rng(2)
    rows = []
    for run in runs.to_dict("records"):
        kept = (run["mixer"], run["lr"], run["seed"]) not in DROPPED
        gap = float(rng.uniform(0.05, 0.9)) if kept else 0.004
        for component in ("block_input", "mixer_output"):
            for layer in range(run["n_layers"]):
                for readout in READOUTS:
                    attrib = float(rng.normal(0.5, 0.4))
                    if run["seed"] == 0 and readout == "@Key" and component == "block_input":
                        attrib = math.nan
                    rows.append({**run, "step": 100, "corrupted": "query_item_orig", "component": component,
                                 "layer": layer, "readout": readout, "attrib": attrib,
                                 "attrib_example_median": attrib, "gap": gap, "n": 6, "kept": kept})
    table = pd.DataFrame(rows)
    return table[[c for c in table.columns if c != "selected"] + ["selected"]]


def headline(mechanism):
    return mechanism[(mechanism.component == "block_input") & (mechanism.corrupted == "query_item_orig")]


def curves_table(**kwargs):
    runs = run_coords(**kwargs)
    rng = np.random.default_rng(3)
    frames = [
        runs.assign(step=step, quantity=quantity, value=rng.uniform(0, 1, len(runs)))
        for quantity in sp.QUANTITIES
        for step in (0, 50, 100)
    ]
    return pd.concat(frames, ignore_index=True)


def table_of(plot):
    """The table of ``plot``, a Plot of a figure with axes and its table (index reset)."""
    assert isinstance(plot, sp.Plot) and isinstance(plot.figure, Figure) and plot.figure.axes
    assert plot.table.index.equals(pd.RangeIndex(len(plot.table)))
    return plot.table


def message(plot):
    """The text of a figure that says there is nothing to draw."""
    (ax,) = plot.figure.axes
    return " ".join(t.get_text() for t in ax.texts)


def test_accuracy_vs_width_draws_the_selection():
    selection = selection_table(n_layers=(1, 2))
    plot = sp.accuracy_vs_width(selection)
    pd.testing.assert_frame_equal(table_of(plot), selection)
    assert len(plot.figure.axes) == 2 and plot.figure.legends


def test_accuracy_vs_width_picks_one_metric():
    selection = selection_table()
    both = pd.concat([selection, selection.assign(metric="loss")], ignore_index=True)
    with pytest.raises(ValueError, match="several metrics"):
        sp.accuracy_vs_width(both)
    pd.testing.assert_frame_equal(table_of(sp.accuracy_vs_width(both, metric="accuracy")), selection)


def test_mechanism_scatter_draws_the_attrib_of_every_kept_run_at_the_last_layer():
    mechanism = mechanism_table()
    drawn = table_of(sp.mechanism_scatter(mechanism))
    kept_runs = set(mechanism.loc[mechanism["kept"], "run"])
    # every learning rate, not only the selected one; the dropped runs left out
    assert set(drawn["run"]) == kept_runs and len(drawn) == len(kept_runs)
    assert not drawn["selected"].all() and drawn["kept"].all()
    assert len(kept_runs) == mechanism["run"].nunique() - len(WIDTHS)  # one dropped run per width
    assert (drawn["layer"] == 1).all()
    run = sorted(kept_runs)[0]
    at = headline(mechanism)
    at = at[(at.run == run) & (at.layer == 1) & (at.readout == "@Value")]
    assert drawn.set_index("run").loc[run, "attrib@Value"] == at["attrib"].item()
    assert {"attrib@Key", "attrib@Query", "attrib@Value", "d_model", "mixer", "gap"} <= set(drawn.columns)


def test_mechanism_figures_draw_the_study_tables_attrib_over_learning_rates(tmp_path):
    """From the hand-computed runs of test_attribution, through the study tables: the run at
    the other learning rate ("hurts", negative Attrib) is drawn, the run without a gap is not."""
    from hand_made import HAND_ATTRIB, HAND_LAYER_ATTRIB, hand_study_tables


    mechanism = hand_study_tables(tmp_path)["mechanism"]
    drawn = table_of(sp.mechanism_scatter(mechanism)).set_index("run")
    assert sorted(drawn.index) == ["hurts", "over"]
    for run in ("hurts", "over"):
        assert drawn.loc[run, "attrib@Value"] == pytest.approx(HAND_ATTRIB[run], rel=1e-4)
        assert drawn.loc[run, "attrib@Query"] == 0.0
    boxes = table_of(sp.mechanism_boxes(mechanism))
    assert set(boxes.run) == {"hurts", "over"} and (boxes.component == "block_input").all()
    layers = table_of(sp.mechanism_layers(mechanism)).set_index(["run", "layer"])
    assert sorted(layers.index) == [("hurts", 0), ("hurts", 1), ("over", 0), ("over", 1)]
    assert layers.loc[("over", 0), "attrib"] == pytest.approx(HAND_LAYER_ATTRIB["over", 0], rel=1e-4)


def test_mechanism_boxes_draw_the_kept_runs_at_the_last_layer():
    mechanism = mechanism_table(n_layers=(1, 2))
    drawn = table_of(sp.mechanism_boxes(mechanism))
    rows = headline(mechanism)
    expected = rows[rows.kept & (rows.layer == rows.n_layers - 1) & rows.attrib.notna()]
    pd.testing.assert_frame_equal(drawn, expected.reset_index(drop=True))


@pytest.mark.parametrize("by", ["mixer_args.d_conv", "layer"])
def test_mechanism_boxes_by_a_column(by):
    mechanism = mechanism_table(d_conv=True)
    drawn = table_of(sp.mechanism_boxes(mechanism, by=by))
    layers = {0, 1} if by == "layer" else {1}  # by="layer" keeps every layer
    assert (
        set(drawn["layer"]) == layers
        and drawn["kept"].all()
        and drawn["attrib"].notna().all()
        and (drawn["component"] == "block_input").all()
    )
    with pytest.raises(ValueError, match="nope"):
        sp.mechanism_boxes(mechanism, by="nope")


def test_mechanism_layers_read_the_mixer_output_at_the_query_at_every_layer():
    mechanism = mechanism_table(n_layers=(1, 3))
    drawn = table_of(sp.mechanism_layers(mechanism))
    rows = mechanism[(mechanism.component == "mixer_output") & (mechanism.readout == "@Query") & mechanism.kept]
    pd.testing.assert_frame_equal(drawn, rows.reset_index(drop=True))
    assert set(drawn.loc[drawn.n_layers == 1, "layer"]) == {0} and set(drawn.loc[drawn.n_layers == 3, "layer"]) == {0, 1, 2}
    empty = sp.mechanism_layers(mechanism[mechanism.component == "block_input"])
    assert table_of(empty).empty and "no kept runs with Attrib of mixer_output" in message(empty)


def test_training_curves_average_the_selected_seeds():
    curves = curves_table(d_conv=True)
    drawn = table_of(sp.training_curves(curves))
    assert (drawn["n_seeds"] == 2).all()
    assert len(drawn) == len(MIXERS) * len(WIDTHS) * len(sp.QUANTITIES) * 3
    rows = curves[
        curves.selected
        & (curves.mixer == "mamba")
        & (curves.d_model == 32)
        & (curves.quantity == "attrib@Query")
        & (curves.step == 50)
    ]
    assert len(rows) == 2
    row = drawn[
        (drawn.mixer == "mamba")
        & (drawn.d_model == 32)
        & (drawn.quantity == "attrib@Query")
        & (drawn.step == 50)
    ]
    assert row["mean"].item() == pytest.approx(rows["value"].mean())
    assert row["max"].item() == pytest.approx(rows["value"].max())


def test_generalisation_pairs_dev_and_test_per_run():
    run_accuracy = run_accuracy_table()
    drawn = table_of(sp.generalisation(run_accuracy))
    assert len(drawn) == run_accuracy["run"].nunique()
    run = drawn["run"].iloc[3]
    by_run = run_accuracy[run_accuracy.run == run].set_index("split")["value"]
    assert drawn.set_index("run").loc[run, ["dev", "test"]].tolist() == [
        by_run["dev"],
        by_run["test"],
    ]
    assert drawn["selected"].sum() == run_accuracy["selected"].sum() / 2


def test_nothing_to_draw_gives_a_figure_that_says_so():
    plot = sp.mechanism_scatter(mechanism_table().assign(kept=False))
    assert table_of(plot).empty and "no kept runs" in message(plot)
    plot = sp.generalisation(run_accuracy_table(), x_split="train")
    assert table_of(plot).empty and "no run has accuracy on both 'train' and 'test'" in message(plot)


@pytest.mark.parametrize(
    "function, make, drop",
    [
        (sp.accuracy_vs_width, selection_table, ["ci_low", "d_model"]),
        (sp.mechanism_scatter, mechanism_table, ["readout"]),
        (sp.mechanism_boxes, mechanism_table, ["attrib", "kept"]),
        (sp.mechanism_layers, mechanism_table, ["layer", "kept"]),
        (sp.training_curves, curves_table, ["quantity"]),
        (sp.generalisation, run_accuracy_table, ["split"]),
    ],
)
def test_missing_columns_are_named(function, make, drop):
    with pytest.raises(ValueError, match="missing column") as error:
        function(make().drop(columns=drop))
    assert all(name in str(error.value) for name in drop)


def test_mixer_colours_do_not_depend_on_the_other_mixers():
    assert (
        sp.mixer_palette(["mamba", "attention"])["mamba"]
        == sp.mixer_palette(["mamba"])["mamba"]
    )
    assert list(sp.mixer_palette(["zeta", "mamba", "attention", "alpha"])) == [
        "attention",
        "mamba",
        "alpha",
        "zeta",
    ]
    assert (
        sp.mixer_palette(["zeta"])["zeta"]
        == sp.mixer_palette(["zeta", "attention"])["zeta"]
    )
    assert len(set(sp.mixer_palette(sp.MIXER_ORDER).values())) == len(sp.MIXER_ORDER)


def png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60)
    return buffer.getvalue()


def test_style_does_not_leak_and_a_figure_saved_later_looks_the_same():
    before = dict(mpl.rcParams)
    plot = sp.training_curves(curves_table())  # its tick count depends on the style's text size
    assert dict(mpl.rcParams) == before
    with _style():
        inside = png(sp.training_curves(curves_table()).figure)
    assert png(plot.figure) == inside


def test_two_study_figures_compose_into_one_figure(tmp_path):
    root = Figure(figsize=(14, 4), layout="constrained")
    left, right = root.subfigures(1, 2)
    width = sp.accuracy_vs_width(selection_table(), fig=left)
    scatter = sp.mechanism_scatter(mechanism_table(), fig=right)
    assert width.figure is left and scatter.figure is right
    assert left.axes and right.axes and set(root.axes) == set(left.axes) | set(right.axes)
    assert left.legends and right.legends
    pd.testing.assert_frame_equal(width.table, selection_table())
    root.savefig(tmp_path / "both.png")
    assert (tmp_path / "both.png").stat().st_size > 0


def test_a_figure_with_nothing_to_draw_says_so_in_the_given_figure():
    given = Figure().subfigures(1, 2)[1]
    plot = sp.mechanism_layers(mechanism_table().assign(kept=False), fig=given)
    assert plot.figure is given and "no kept runs" in message(plot)


def test_drawing_a_study_figure_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for function, make in ((sp.accuracy_vs_width, selection_table), (sp.mechanism_boxes, mechanism_table),
                           (sp.generalisation, run_accuracy_table)):
        function(make())
    assert not any(tmp_path.iterdir())


def test_mechanism_figures_read_the_report_split_and_by_split_shows_each():
    one = mechanism_table()
    mechanism = pd.concat([one.assign(split="dev", attrib=one["attrib"] + 10), one.assign(split="test")],
                          ignore_index=True)
    drawn = table_of(sp.mechanism_boxes(mechanism))
    assert set(drawn["split"]) == {"test"} and (drawn["attrib"] < 10).all()
    points = sp.mechanism_points(mechanism)
    assert points["run"].is_unique and set(points["split"]) == {"test"}
    drawn = table_of(sp.mechanism_boxes(mechanism, by="split"))
    assert set(drawn["split"]) == {"dev", "test"} and (drawn.loc[drawn.split == "dev", "attrib"] > 5).all()


def test_accuracy_bands_are_cut_to_the_possible_range(monkeypatch):
    from tinylang.figures import _study_style, study_accuracy

    ax = Figure().subplots()
    line = pd.DataFrame({"d_model": [16, 32], "mean": [0.9, 0.1], "ci_low": [0.5, -0.4], "ci_high": [1.3, 0.6]})
    _study_style._band_line(ax, line, "d_model", ("ci_low", "ci_high"), "C0", False, limits=(0.0, 1.0))
    ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == 0.0 and ys.max() == 1.0

    seen = []
    monkeypatch.setattr(study_accuracy, "_band_line", lambda *a, **k: seen.append(k.get("limits")))
    selection = selection_table()
    sp.accuracy_vs_width(selection)
    sp.accuracy_vs_width(selection.assign(metric="loss"))
    n = len(seen) // 2
    assert n and seen[:n] == [(0.0, 1.0)] * n and seen[n:] == [None] * n  # a loss is not bounded by 1
