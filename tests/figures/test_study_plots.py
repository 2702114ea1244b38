"""Study figures: each draws from a synthetic study table, saves PNG/PDF and the table
it drew."""

from __future__ import annotations

import math

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest

from tinylang.figures import study_plots as sp

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


def outputs(tmp_path, name):
    return tmp_path / f"{name}.parquet", [
        tmp_path / f"{name}.png",
        tmp_path / f"{name}.pdf",
    ]


def assert_written(table_out, figure_outs, returned):
    for path in [table_out, *figure_outs]:
        assert path.exists() and path.stat().st_size > 0, path
    pd.testing.assert_frame_equal(
        pd.read_parquet(table_out), returned.reset_index(drop=True)
    )


def test_accuracy_vs_width_saves_the_selection_it_drew(tmp_path):
    selection = selection_table(n_layers=(1, 2))
    table_out, figure_outs = outputs(tmp_path, "width")
    drawn = sp.accuracy_vs_width(selection, table_out, figure_outs)
    assert_written(table_out, figure_outs, drawn)
    pd.testing.assert_frame_equal(drawn, selection)


def test_accuracy_vs_width_picks_one_metric(tmp_path):
    selection = selection_table()
    both = pd.concat([selection, selection.assign(metric="loss")], ignore_index=True)
    with pytest.raises(ValueError, match="several metrics"):
        sp.accuracy_vs_width(both, *outputs(tmp_path, "width"))
    drawn = sp.accuracy_vs_width(both, *outputs(tmp_path, "width"), metric="accuracy")
    pd.testing.assert_frame_equal(drawn, selection)


def test_mechanism_scatter_saves_the_attrib_of_every_kept_run_at_the_last_layer(tmp_path):
    mechanism = mechanism_table()
    table_out, figure_outs = outputs(tmp_path, "scatter")
    drawn = sp.mechanism_scatter(mechanism, table_out, figure_outs)
    assert_written(table_out, figure_outs, drawn)
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
    drawn = sp.mechanism_scatter(mechanism, *outputs(tmp_path, "scatter")).set_index("run")
    assert sorted(drawn.index) == ["hurts", "over"]
    for run in ("hurts", "over"):
        assert drawn.loc[run, "attrib@Value"] == pytest.approx(HAND_ATTRIB[run], rel=1e-4)
        assert drawn.loc[run, "attrib@Query"] == 0.0
    boxes = sp.mechanism_boxes(mechanism, *outputs(tmp_path, "boxes"))
    assert set(boxes.run) == {"hurts", "over"} and (boxes.component == "block_input").all()
    layers = sp.mechanism_layers(mechanism, *outputs(tmp_path, "layers")).set_index(["run", "layer"])
    assert sorted(layers.index) == [("hurts", 0), ("hurts", 1), ("over", 0), ("over", 1)]
    assert layers.loc[("over", 0), "attrib"] == pytest.approx(HAND_LAYER_ATTRIB["over", 0], rel=1e-4)


def test_mechanism_boxes_draw_the_kept_runs_at_the_last_layer(tmp_path):
    mechanism = mechanism_table(n_layers=(1, 2))
    table_out, figure_outs = outputs(tmp_path, "boxes")
    drawn = sp.mechanism_boxes(mechanism, table_out, figure_outs)
    assert_written(table_out, figure_outs, drawn)
    rows = headline(mechanism)
    expected = rows[rows.kept & (rows.layer == rows.n_layers - 1) & rows.attrib.notna()]
    pd.testing.assert_frame_equal(drawn, expected.reset_index(drop=True))


@pytest.mark.parametrize("by", ["mixer_args.d_conv", "layer"])
def test_mechanism_boxes_by_a_column(tmp_path, by):
    mechanism = mechanism_table(d_conv=True)
    table_out, figure_outs = outputs(tmp_path, f"boxes_{by}")
    drawn = sp.mechanism_boxes(mechanism, table_out, figure_outs, by=by)
    assert_written(table_out, figure_outs, drawn)
    layers = {0, 1} if by == "layer" else {1}  # by="layer" keeps every layer
    assert (
        set(drawn["layer"]) == layers
        and drawn["kept"].all()
        and drawn["attrib"].notna().all()
        and (drawn["component"] == "block_input").all()
    )
    with pytest.raises(ValueError, match="nope"):
        sp.mechanism_boxes(mechanism, table_out, figure_outs, by="nope")


def test_mechanism_layers_read_the_mixer_output_at_the_query_at_every_layer(tmp_path):
    mechanism = mechanism_table(n_layers=(1, 3))
    table_out, figure_outs = outputs(tmp_path, "layers")
    drawn = sp.mechanism_layers(mechanism, table_out, figure_outs)
    assert_written(table_out, figure_outs, drawn)
    rows = mechanism[(mechanism.component == "mixer_output") & (mechanism.readout == "@Query") & mechanism.kept]
    pd.testing.assert_frame_equal(drawn, rows.reset_index(drop=True))
    assert set(drawn.loc[drawn.n_layers == 1, "layer"]) == {0} and set(drawn.loc[drawn.n_layers == 3, "layer"]) == {0, 1, 2}
    empty = sp.mechanism_layers(mechanism[mechanism.component == "block_input"], table_out, figure_outs)
    assert empty.empty and all(p.stat().st_size > 0 for p in figure_outs)


def test_training_curves_average_the_selected_seeds(tmp_path):
    curves = curves_table(d_conv=True)
    table_out, figure_outs = outputs(tmp_path, "curves")
    drawn = sp.training_curves(curves, table_out, figure_outs)
    assert_written(table_out, figure_outs, drawn)
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


def test_generalisation_pairs_dev_and_test_per_run(tmp_path):
    run_accuracy = run_accuracy_table()
    table_out, figure_outs = outputs(tmp_path, "generalisation")
    drawn = sp.generalisation(run_accuracy, table_out, figure_outs)
    assert_written(table_out, figure_outs, drawn)
    assert len(drawn) == run_accuracy["run"].nunique()
    run = drawn["run"].iloc[3]
    by_run = run_accuracy[run_accuracy.run == run].set_index("split")["value"]
    assert drawn.set_index("run").loc[run, ["dev", "test"]].tolist() == [
        by_run["dev"],
        by_run["test"],
    ]
    assert drawn["selected"].sum() == run_accuracy["selected"].sum() / 2


def test_nothing_to_draw_gives_a_figure_that_says_so(tmp_path):
    mechanism = mechanism_table().assign(kept=False)
    table_out, figure_outs = outputs(tmp_path, "empty")
    drawn = sp.mechanism_scatter(mechanism, table_out, figure_outs)
    assert drawn.empty and all(p.stat().st_size > 0 for p in figure_outs)
    drawn = sp.generalisation(
        run_accuracy_table(), table_out, figure_outs, x_split="train"
    )
    assert drawn.empty and table_out.exists()


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
def test_missing_columns_are_named(tmp_path, function, make, drop):
    with pytest.raises(ValueError, match="missing column") as error:
        function(make().drop(columns=drop), *outputs(tmp_path, "missing"))
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


def test_style_does_not_leak(tmp_path):
    before = dict(mpl.rcParams)
    sp.accuracy_vs_width(selection_table(), *outputs(tmp_path, "width"))
    assert dict(mpl.rcParams) == before


def test_mechanism_figures_read_the_report_split_and_by_split_shows_each(tmp_path):
    one = mechanism_table()
    mechanism = pd.concat([one.assign(split="dev", attrib=one["attrib"] + 10), one.assign(split="test")],
                          ignore_index=True)
    table_out, figure_outs = outputs(tmp_path, "boxes")
    drawn = sp.mechanism_boxes(mechanism, table_out, figure_outs)
    assert set(drawn["split"]) == {"test"} and (drawn["attrib"] < 10).all()
    points = sp.mechanism_points(mechanism)
    assert points["run"].is_unique and set(points["split"]) == {"test"}
    table_out, figure_outs = outputs(tmp_path, "boxes_by_split")
    drawn = sp.mechanism_boxes(mechanism, table_out, figure_outs, by="split")
    assert_written(table_out, figure_outs, drawn)
    assert set(drawn["split"]) == {"dev", "test"} and (drawn.loc[drawn.split == "dev", "attrib"] > 5).all()


def test_accuracy_bands_are_cut_to_the_possible_range(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from tinylang.figures import _study_style, study_accuracy

    fig, ax = plt.subplots()
    line = pd.DataFrame({"d_model": [16, 32], "mean": [0.9, 0.1], "ci_low": [0.5, -0.4], "ci_high": [1.3, 0.6]})
    _study_style._band_line(ax, line, "d_model", ("ci_low", "ci_high"), "C0", False, limits=(0.0, 1.0))
    ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == 0.0 and ys.max() == 1.0
    plt.close(fig)

    seen = []
    monkeypatch.setattr(study_accuracy, "_band_line", lambda *a, **k: seen.append(k.get("limits")))
    selection = selection_table()
    sp.accuracy_vs_width(selection, *outputs(tmp_path, "width"))
    sp.accuracy_vs_width(selection.assign(metric="loss"), *outputs(tmp_path, "loss"))
    n = len(seen) // 2
    assert n and seen[:n] == [(0.0, 1.0)] * n and seen[n:] == [None] * n  # a loss is not bounded by 1
