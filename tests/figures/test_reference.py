"""The paper's reference numbers: the file's rows are valid, a bad row is refused with its
file and line, and the study figures draw the rows that match their axes (marked in the
drawn table by ``source``); the study figure stage saves that table beside the figure."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tinylang.figures import reference as ref
from tinylang.figures import study_plots as sp

HEADER = ",".join(ref.COLUMNS)
GOOD = "ar,ar_8192,§5.1,Figure 3a,v2,mamba,256,2,,,,accuracy,at_width,0.9125,a note"


def write(tmp_path, *lines, header=HEADER):
    path = tmp_path / "reference.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_the_reference_file_is_valid():
    from tinylang.models.mixers import MIXERS

    table = ref.paper_reference()
    assert len(table) > 0 and list(table.columns) == list(ref.COLUMNS)
    assert set(table["mixer"]) <= set(MIXERS.names())
    assert table["value"].map(math.isfinite).all()
    accuracy = table[table["metric"] == "accuracy"]
    assert accuracy["value"].between(0, 1).all()
    assert (table["readout"].notna() == (table["metric"] == "attrib")).all()
    for study in set(table["study"]):  # every row reaches its study's figures
        assert (ref.STUDIES_DIR / f"{study}.yaml").exists()
        assert len(ref.study_reference(study)) == (table["study"] == study).sum()


def test_the_width_64_numbers_of_the_ar_study():
    ar = ref.paper_reference("ar")
    attention = ar[(ar["mixer"] == "attention") & (ar["d_model"] == 64) & (ar["metric"] == "accuracy")]
    assert attention["value"].tolist() == [1.0]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("ar,ar_8192,§5.1,Figure 3a,v2,transformer,256,2,,,,accuracy,at_width,0.9,", "unknown mixer 'transformer'"),
        ("ar,ar_8192,§5.1,Figure 3a,v2,mamba,256,2,,,,accuracy,at_width,high,", "value 'high' is not a number"),
        ("ar,ar_8192,§5.1,Figure 3a,v2,mamba,,2,,,,accuracy,at_width,0.9,", "at_width needs a d_model"),
        ("ar,ar_8192,§5.1,Figure 3b,v2,mamba,,2,,,,attrib,nearly_all_runs,0.9,", "attrib needs a readout"),
        ("ar,ar_8192,§5.1,Figure 3a,v2,mamba,wide,2,,,,accuracy,at_width,0.9,", "d_model 'wide' is not an integer"),
        ("ar,ar_9999,§5.1,Figure 3a,v2,mamba,256,2,,,,accuracy,at_width,0.9,", "unknown task 'ar_9999'"),
        ("ar,ar_8192,§5.1,Figure 3a,v4,mamba,256,2,,,,accuracy,at_width,0.9,", "unknown paper_version 'v4'"),
        ("ar,ar_8192,§5.1,Figure 3a,v2,mamba,256,2,maybe,,,accuracy,at_width,0.9,", "pos_embed 'maybe'"),
        ("ar,ar_8192,§5.1,Figure 3a,v2,mamba,256,2,,,,accuracy,at_width,,", "empty value"),
    ],
)
def test_a_bad_row_is_refused_with_its_file_and_line(tmp_path, line, problem):
    path = write(tmp_path, GOOD, line)
    with pytest.raises(ref.ReferenceError) as error:
        ref.paper_reference(path=path)
    assert f"{path}, line 3: " in str(error.value) and problem in str(error.value)


def test_a_file_without_the_columns_is_refused(tmp_path):
    path = write(tmp_path, GOOD.rsplit(",", 1)[0], header=HEADER.replace(",note", ""))
    with pytest.raises(ref.ReferenceError, match="missing: note"):
        ref.paper_reference(path=path)


def test_values_are_typed_and_empty_cells_missing(tmp_path):
    table = ref.paper_reference(path=write(tmp_path, GOOD))
    row = table.iloc[0]
    assert row["d_model"] == 256 and row["n_layers"] == 2 and row["value"] == 0.9125
    assert pd.isna(row["pos_embed"]) and pd.isna(row["readout"]) and pd.isna(row["split"])


def test_cpu_studies_share_the_rows_under_their_own_language_keys():
    cpu = ref.study_reference("atr-cpu")
    assert len(cpu) > 0 and set(cpu["language"]) <= {"easy20", "medium20"}
    pd.testing.assert_frame_equal(cpu, ref.study_reference("atr"))
    assert ref.study_reference("ar-spot-cpu").empty  # a study the paper has no numbers for


def test_the_spot_check_draws_the_ar_studys_rows_by_its_paper_study():
    import yaml

    from tinylang.config import load_study

    spot = load_study(yaml.safe_load(open("config/studies/ar-spot-cpu.yaml")), language_library="config/languages")
    rows = ref.study_reference(spot.paper_study)
    assert spot.paper_study == "ar" and set(rows["language"]) == set(spot.languages) == {"ar"}
    assert {64} <= set(rows["d_model"].dropna())  # the spot check's width has paper numbers


# ----------------------------------------------------------------------
# Drawn beside ours


def selection(widths=(16, 32)):
    rows = [{"language": "ar", "mixer": mixer, "d_model": d, "n_layers": 2, "pos_embed": mixer == "attention",
             "lr": 0.001, "select_split": "test", "report_split": "test", "metric": "accuracy",
             "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n_seeds": 2}
            for mixer in ("attention", "mamba") for d in widths]
    return pd.DataFrame(rows)


def reference_rows(*rows):
    base = {"study": "ar", "task": "ar_8192", "section": "§5.1", "figure": "Figure 3a", "paper_version": "v2",
            "language": "ar", "mixer": "attention", "d_model": 64, "n_layers": 2, "pos_embed": True, "split": None,
            "readout": None, "metric": "accuracy", "statistic": "at_width", "value": 1.0, "note": ""}
    return pd.DataFrame([{**base, **row} for row in rows]).astype(
        {"d_model": "Int64", "n_layers": "Int64", "pos_embed": "boolean"})


def test_the_accuracy_figure_draws_the_matching_paper_rows():
    paper = reference_rows(
        {},  # drawn: its width joins the axis
        {"mixer": "mamba", "d_model": None, "pos_embed": None, "statistic": "max_over_widths", "value": 0.9},
        {"mixer": "hyena"},  # a mixer we did not run
        {"n_layers": 3},  # a layer count we did not run
        {"split": "dev"},  # not the report split
        {"pos_embed": False},  # attention ran with positions only
        {"metric": "attrib", "readout": "@Value"},
    )
    plot = sp.accuracy_vs_width(selection(), reference=paper)
    drawn = plot.table
    assert (drawn["source"] == "ours").sum() == len(selection())
    theirs = drawn[drawn["source"] == "paper"]
    assert sorted(theirs["mixer"]) == ["attention", "mamba"]
    assert theirs["mean"].tolist() == [1.0, 0.9] and theirs["figure"].eq("Figure 3a").all()
    assert len(drawn) == len(selection()) + 2 and plot.figure.axes


def test_the_ar_studys_reference_on_its_accuracy_figure():
    drawn = sp.accuracy_vs_width(selection(), reference=ref.study_reference("ar-cpu")).table
    theirs = drawn.query("source == 'paper'")
    assert set(zip(theirs["mixer"], theirs["d_model"])) == {
        ("attention", 32), ("attention", 64), ("attention", 128), ("attention", 256), ("mamba", 256)}


def test_without_a_reference_the_table_is_ours_alone():
    drawn = sp.accuracy_vs_width(selection()).table
    assert "source" not in drawn
    nothing = reference_rows({"mixer": "hyena"})
    drawn = sp.accuracy_vs_width(selection(), reference=nothing).table
    assert drawn["source"].eq("ours").all() and len(drawn) == len(selection())


def mechanism():
    rows = [{"run": f"r-{mixer}-{seed}", "language": "ar", "mixer": mixer, "d_model": 32, "n_layers": 2,
             "pos_embed": mixer == "attention", "lr": 0.001, "seed": seed, "step": 100,
             "corrupted": "query_item_orig", "component": "block_input", "layer": layer, "readout": readout,
             "attrib": 0.5, "kept": True, "selected": True}
            for mixer in ("attention", "mamba") for seed in (0, 1) for layer in (0, 1)
            for readout in sp.READOUTS]
    return pd.DataFrame(rows)


def test_the_mechanism_boxes_draw_the_paper_attrib():
    paper = reference_rows(
        {"metric": "attrib", "readout": "@Value", "d_model": None, "statistic": "nearly_all_runs"},
        {"metric": "attrib", "readout": "@Value", "d_model": None, "statistic": "nearly_all_runs", "n_layers": 1},
    )
    drawn = sp.mechanism_boxes(mechanism(), reference=paper).table
    theirs = drawn[drawn["source"] == "paper"]
    assert len(theirs) == 1 and theirs["readout"].tolist() == ["@Value"] and theirs["attrib"].tolist() == [1.0]
    by_layer = sp.mechanism_boxes(mechanism(), by="layer", reference=paper).table
    assert "source" not in by_layer  # the paper's values are last-layer values


def test_the_study_figure_stage_draws_the_studys_reference_and_saves_it(tmp_path):
    from tinylang.stages import StudyFigureSpec, draw_study_figure
    from tinylang.tables import read_table

    table = tmp_path / "selection.parquet"
    selection().to_parquet(table)
    out = tmp_path / "figures" / "new"  # the stage makes the folder
    table_out, figure_outs = out / "width.parquet", [out / "width.png", out / "width.pdf"]
    drawn = draw_study_figure(StudyFigureSpec("accuracy_vs_width", table, table_out, figure_outs, paper_study="ar-cpu"))
    assert (drawn["source"] == "paper").sum() == 5
    pd.testing.assert_frame_equal(read_table(table_out), drawn)
    assert all(path.stat().st_size > 0 for path in figure_outs)
