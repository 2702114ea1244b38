"""The per-run figures: each returns a Plot (a figure and the table it draws) and writes no
file; the stage saves both. Attrib bars of dropped runs do not flatten the kept ones."""

from __future__ import annotations

import pandas as pd
import pytest
from hand_made import hand_interventions
from matplotlib.figure import Figure

from tinylang.figures import Plot, accuracy, attribution, intervention_heatmap, language_stats, training_curves
from tinylang.figures.plots import ATTRIB_AXIS, _clip_bars
from tinylang.tables import read_table, write_table


def train_logs(folder):
    folder.mkdir(exist_ok=True)
    logs = {}
    for run, scale in (("attention", 1.0), ("mamba", 2.0)):
        logs[run] = folder / f"{run}.parquet"
        write_table(pd.DataFrame({"step": [0, 10, 20], "loss": [scale * 2, scale, scale / 2], "lr": [1e-3] * 3}),
                    logs[run])
    return logs


def behaviour_table(folder):
    rows = [{"run": run, "step": step, "split": split, "query_type": query, "metric": "accuracy",
             "value": step / 100, "n": 8}
            for run in ("attention", "mamba") for step in (50, 100) for split in ("train", "test")
            for query in ("ALL", "KEY")]
    path = folder / "behaviour.parquet"
    write_table(pd.DataFrame(rows), path)
    return path


def interventions(folder, runs=("over", "hurts", "flat")):
    path = folder / f"interventions_{'_'.join(runs) or 'none'}.parquet"
    table = hand_interventions(runs) if runs else hand_interventions(("over",)).iloc[:0]
    write_table(table, path)
    return path


def assert_drawn(plot):
    assert isinstance(plot, Plot) and isinstance(plot.figure, Figure) and plot.figure.axes
    assert plot.table.index.equals(pd.RangeIndex(len(plot.table)))
    return plot.table


def test_training_curves_draw_the_loss_of_each_run(tmp_path):
    table = assert_drawn(training_curves(train_logs(tmp_path)))
    assert set(table["run"]) == {"attention", "mamba"} and set(table["metric"]) == {"loss", "lr"}
    assert len(table) == 2 * 2 * 3


def test_training_curves_draw_into_a_given_axes(tmp_path):
    root = Figure()
    ax, other = root.subplots(1, 2)
    plot = training_curves(train_logs(tmp_path), ax=ax)
    assert plot.figure is ax.figure is root and len(root.axes) == 2
    assert len(ax.lines) >= 2 and not other.lines
    assert ax.get_title() == "Training curves" and ax.get_yscale() == "log"


def test_the_accuracy_figure_reads_every_query_type_at_once(tmp_path):
    plot = accuracy([behaviour_table(tmp_path)])
    table = assert_drawn(plot)
    assert len(plot.figure.axes) == 2 and len(table) == 2 * 2 * 2
    assert set(table.columns) == {"run", "step", "split", "metric", "value", "n"}


def test_the_intervention_heatmap_draws_a_panel_per_corrupted_item_and_component(tmp_path):
    from tinylang.evaluation.restoration import restoration_summary

    plot = intervention_heatmap([interventions(tmp_path, ("over",))])
    table = assert_drawn(plot)
    expected = restoration_summary(hand_interventions(("over",)))
    pd.testing.assert_frame_equal(table, expected.reset_index(drop=True), check_dtype=False)
    titles = sorted(ax.get_title() for ax in plot.figure.axes)
    assert titles == ["query_item_orig | block_input", "query_item_orig | mixer_output"]
    assert plot.figure.get_suptitle().startswith("over @ step 100")


def test_the_attribution_bars_and_a_figure_without_results(tmp_path):
    plot = attribution([interventions(tmp_path)])
    table = assert_drawn(plot)
    assert sorted(set(table["run"])) == ["flat", "hurts", "over"]
    assert not table.set_index("run").loc["flat", "kept"].any()
    ax = plot.figure.axes[0]
    assert any("dropped" in label.get_text() for label in ax.get_xticklabels())
    empty = attribution([interventions(tmp_path, ())])
    assert empty.table.empty and "no intervention results" in empty.figure.axes[0].texts[0].get_text()
    heatmap = intervention_heatmap([interventions(tmp_path, ())])
    assert heatmap.table.empty and heatmap.figure.axes[0].texts


def test_language_stats_draw_a_panel_per_statistic(tmp_path):
    from tinylang.languages import parse_language_config, write_language

    config = {"type": "ar", "num_kv": 8, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 16, "test": 8}}
    write_language(parse_language_config(config), tmp_path / "ar")
    plot = language_stats({"ar": tmp_path / "ar"})
    table = assert_drawn(plot)
    statistics = list(dict.fromkeys(table["statistic"]))
    assert sorted(ax.get_title() for ax in plot.figure.axes) == sorted(statistics)
    assert set(table["split"]) == {"train", "test"} and set(table["language"]) == {"ar"}
    assert [t.get_text() for t in plot.figure.legends[0].get_texts()] == list(dict.fromkeys(table["split"]))


def test_drawing_writes_no_file(tmp_path, monkeypatch):
    logs = train_logs(tmp_path / "logs")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    training_curves(logs)
    attribution([interventions(tmp_path)])
    assert not any(work.iterdir())
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["attention.parquet", "mamba.parquet"]


@pytest.mark.parametrize("figure", ["training_curves", "attribution"])
def test_the_figure_stage_writes_the_table_and_the_figures(tmp_path, figure):
    from tinylang.stages import FigureSpec, draw_figure

    inputs = train_logs(tmp_path) if figure == "training_curves" else [interventions(tmp_path)]
    out = tmp_path / "figures" / "new"  # the stage makes the folder
    spec = FigureSpec(figure, inputs, out / f"{figure}.parquet", [out / f"{figure}.png", out / f"{figure}.pdf"])
    drawn = draw_figure(spec)
    pd.testing.assert_frame_equal(read_table(spec.table_out), drawn)
    assert all(path.stat().st_size > 0 for path in spec.figure_outs)


def test_bars_beyond_the_attrib_axis_are_clipped_and_print_their_value():
    ax = Figure().subplots()
    ax.bar(range(4), [0.5, 1.0, 512.0, -300.0])
    clipped = _clip_bars(ax, pd.Series([0.5, 1.0]))  # the two huge bars belong to dropped runs
    assert clipped == 2 and ax.get_ylim() == ATTRIB_AXIS
    assert sorted(t.get_text() for t in ax.texts) == ["-300", "512"]


def test_the_axis_widens_to_show_every_kept_run():
    ax = Figure().subplots()
    ax.bar(range(2), [0.5, 2.4])
    assert _clip_bars(ax, pd.Series([0.5, 2.4])) == 0
    assert ax.get_ylim()[1] >= 2.4 and not ax.texts
