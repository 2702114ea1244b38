"""``tinylang.results``: a study's tables in one call, with a ``study`` column; several at once."""

from __future__ import annotations

import pandas as pd
import pytest

from tinylang.results import load_studies, load_study
from tinylang.tables import write_table


def write_study(root, name, *, interventions=True, accuracy=0.5):
    """A results folder with tiny hand-made tables (one run)."""
    tables = root / name / "study"
    tables.mkdir(parents=True)
    run = {"run": [f"{name}-r0"], "mixer": ["attention"], "lr": [1e-3]}
    write_table(pd.DataFrame(run | {"status": ["ok"]}), tables / "runs.parquet")
    write_table(pd.DataFrame(run | {"split": ["test"], "value": [accuracy]}), tables / "run_accuracy.parquet")
    write_table(pd.DataFrame({"mixer": ["attention"], "mean": [accuracy]}), tables / "selection.parquet")
    write_table(pd.DataFrame(run | {"step": [10], "value": [accuracy]}), tables / "curves.parquet")
    if interventions:
        write_table(pd.DataFrame(run | {"readout": ["@Value"], "attrib": [0.9]}), tables / "mechanism.parquet")
        write_table(pd.DataFrame({"run": pd.Series([], dtype=str)}), tables / "dropped_runs.parquet")
    return root / name


def test_load_study_returns_each_table_with_the_study_first(tmp_path):
    results = load_study(write_study(tmp_path, "ar-cpu", accuracy=0.75))
    assert set(results.tables()) == {"runs", "run_accuracy", "selection", "curves", "mechanism", "dropped_runs"}
    for name, frame in results.tables().items():
        on_disk = pd.read_parquet(tmp_path / "ar-cpu" / "study" / f"{name}.parquet")
        assert list(frame.columns) == ["study", *on_disk.columns], name
        assert (frame["study"] == "ar-cpu").all()
        pd.testing.assert_frame_equal(frame.drop(columns="study"), on_disk)
    assert results.selection["mean"].item() == 0.75


def test_a_study_without_interventions_has_no_mechanism_tables(tmp_path):
    results = load_study(write_study(tmp_path, "plain", interventions=False))
    assert results.mechanism is None and results.dropped_runs is None
    assert set(results.tables()) == {"runs", "run_accuracy", "selection", "curves"}


def test_load_studies_stacks_each_table_over_the_studies(tmp_path):
    a, b = write_study(tmp_path, "a", accuracy=0.25), write_study(tmp_path, "b", interventions=False, accuracy=1.0)
    both = load_studies([a, b])
    assert both.selection.groupby("study")["mean"].first().to_dict() == {"a": 0.25, "b": 1.0}
    assert both.runs["run"].tolist() == ["a-r0", "b-r0"]
    assert both.mechanism["study"].tolist() == ["a"]  # only a has interventions


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: root / "nowhere", "no such folder"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "not written yet"),
    (lambda root: (write_study(root, "s") / "study" / "selection.parquet").unlink() or root / "s",
     "missing selection.parquet"),
])
def test_a_missing_folder_or_table_is_named_with_the_fix(tmp_path, make, message):
    with pytest.raises(FileNotFoundError, match=message) as err:
        load_study(make(tmp_path))
    assert "snakemake" in str(err.value)


def test_two_folders_of_one_study_name_are_refused(tmp_path):
    (tmp_path / "x").mkdir()
    a, b = write_study(tmp_path, "s"), write_study(tmp_path / "x", "s")
    with pytest.raises(ValueError, match="same study"):
        load_studies([a, b])
