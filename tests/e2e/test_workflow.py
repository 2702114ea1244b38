"""The Snakemake DAG end to end on a tiny study: outputs, caching and what a change re-plans."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_STUDY, TRACKED, copy_finished_study, run_snakemake, snakemake_dag, snakemake_summary
from test_safe_loading import truncate
from tracking_records import READERS

from tinylang.models import load_checkpoint

pytestmark = pytest.mark.slow  # every test of the shared tiny study is in this file: one worker builds it


def snakemake(workdir: Path, study: dict, *args: str) -> str:
    """A successful Snakemake run's output (stdout and stderr)."""
    proc = run_snakemake(workdir, study, *args)
    return proc.stdout + proc.stderr


def planned(workdir: Path, study: dict, *targets: str) -> set[tuple[str, str]]:
    """(rule, run or language) pairs Snakemake would run now for ``targets`` (default: every
    output), from its ``--summary`` table; '' where the rule has neither. Evaluation jobs are
    named after their checkpoint: ``evaluate/step12``."""
    summary = snakemake_summary(workdir, study, *targets)
    pending = summary[summary["plan"] != "no update"]
    return {_job(rule, Path(path)) for rule, path in zip(pending["rule"], pending["output_file"])}


def _job(rule: str, output: Path) -> tuple[str, str]:
    """The rule (with the checkpoint for ``evaluate``) and the run or language an output belongs to."""
    parts = output.parts
    if rule == "evaluate":
        rule = f"evaluate/{output.name}"
    if rule == "intervention_heatmap":
        return rule, output.stem.removeprefix("interventions_")
    for folder in ("runs", "languages"):
        if folder in parts[:-1]:
            return rule, parts[parts.index(folder) + 1]
    return rule, ""


@pytest.fixture
def finished_study(finished_tiny_study):
    """The session's finished tiny study (its workdir) and its config."""
    return finished_tiny_study, copy.deepcopy(TINY_STUDY)


@pytest.mark.parametrize("backend", sorted(READERS))
def test_each_run_is_tracked_with_its_params_training_curve_and_final_accuracy(finished_study, backend):
    if backend not in TRACKED:
        pytest.skip(f"{backend} is not installed (pip install 'tinylang[tracking]')")
    workdir, study = finished_study
    out = workdir / "results" / "tiny"
    records = READERS[backend](out / "tracking", "tiny")
    assert sorted(records) == ["attention", "mamba"]
    final = pd.read_parquet(out / "study" / "run_accuracy.parquet")
    for run, record in records.items():
        assert record["params"]["model.mixer"] == run and float(record["params"]["train.lr"]) == 0.003
        assert record["params"]["study"] == "tiny" and record["params"]["language"] == "ar"
        log = pd.read_parquet(out / "runs" / run / "train_log.parquet")
        assert record["metrics"]["train/loss"] == pytest.approx(dict(zip(log.step, log.loss)), rel=1e-6)
        assert sorted(record["metrics"]["eval/accuracy"]) == [0, 6, 12]  # every checkpoint's accuracy
        rows = final[(final.run == run) & (final.metric == "accuracy")]
        assert len(rows) == 2 and {f"final/{split}/accuracy" for split in rows.split} <= set(record["metrics"])
        for split, step, value in zip(rows.split, rows.step, rows.value):
            assert record["metrics"][f"final/{split}/accuracy"] == pytest.approx({step: value}, rel=1e-6)


def test_complete_run_writes_every_output(finished_study):
    workdir, _ = finished_study
    out = workdir / "results" / "tiny"
    assert {p.name for p in (out / "languages" / "ar").iterdir()} >= {"train.parquet", "test.parquet", "meta.json"}
    for run in ("attention", "mamba"):
        assert sorted(p.name for p in (out / "runs" / run / "checkpoints").glob("*.pt")) == [
            "step0.pt", "step12.pt", "step6.pt"
        ]
        log = pd.read_parquet(out / "runs" / run / "train_log.parquet")
        assert log["step"].max() == 12
        behaviour = pd.read_parquet(out / "runs" / run / "eval" / "step12" / "behaviour.parquet")
        assert {"run", "step", "split", "query_type", "metric", "value"} <= set(behaviour.columns)
        interventions = pd.read_parquet(out / "runs" / run / "eval" / "step12" / "interventions.parquet")
        assert set(interventions["corrupted"]) == {"query_item_orig", "target_item_orig"}
        probes = pd.read_parquet(out / "runs" / run / "eval" / "step12" / "probes.parquet")
        assert {"run", "step", "split", "layer", "position", "target", "metric", "value"} <= set(probes.columns)
    attention = pd.read_parquet(out / "runs" / "attention" / "eval" / "step12" / "attention.parquet")
    assert {"layer", "head", "from_position", "to_position", "value"} <= set(attention.columns)
    assert not (out / "runs" / "mamba" / "eval" / "step12" / "attention.parquet").exists()  # no attention to read
    mechanism = pd.read_parquet(out / "study" / "mechanism.parquet")  # every run's interventions, aggregated
    assert set(mechanism.readout) == {"@Key", "@Value", "@Query"} and set(mechanism.run) == {"attention", "mamba"}
    for figure in ("training_curves", "accuracy", "language_stats", "attribution", "interventions_attention", "interventions_mamba"):
        for suffix in (".png", ".pdf", ".parquet"):
            assert (out / "figures" / f"{figure}{suffix}").stat().st_size > 0


def test_nothing_to_do_after_a_complete_run(finished_study):
    workdir, study = finished_study
    assert planned(workdir, study) == set()


def test_compiling_the_train_step_replans_nothing(finished_study):
    workdir, study = finished_study
    assert planned(workdir, {**study, "compile": True}) == set()  # how runs are computed, not what


def test_changing_one_learning_rate_replans_only_that_run(finished_study):
    workdir, study = finished_study
    changed = yaml.safe_load(yaml.safe_dump(study))
    changed["runs"]["mamba"]["train"] = {"lr": 0.01}
    jobs = planned(workdir, changed)
    assert {("train", "mamba"), ("evaluate/step0", "mamba"), ("evaluate/step12", "mamba")} <= jobs
    assert not any(run == "attention" for rule, run in jobs if rule.startswith(("train", "evaluate")))
    assert not any(rule == "language" for rule, _ in jobs)


def test_changing_the_language_replans_everything_downstream(finished_study):
    workdir, study = finished_study
    changed = yaml.safe_load(yaml.safe_dump(study))
    changed["languages"]["ar"]["seed"] = 1
    jobs = planned(workdir, changed)
    assert ("language", "ar") in jobs
    for run in ("attention", "mamba"):
        assert {("train", run), ("evaluate/step0", run), ("evaluate/step12", run)} <= jobs


def test_changing_one_evaluators_options_replans_only_the_checkpoints_it_analyses(finished_study):
    workdir, study = finished_study
    changed = yaml.safe_load(yaml.safe_dump(study))
    changed["evaluators"]["interventions"]["num_examples"] = 6  # interventions: final checkpoint only
    jobs = planned(workdir, changed)
    assert {rule for rule, _ in jobs} == {"evaluate/step12", "accuracy", "intervention_heatmap", "attribution",
                                         "study_tables", "study_figure", "study_summary"}
    assert {run for rule, run in jobs if rule == "evaluate/step12"} == {"attention", "mamba"}


def test_gpu_rules_declare_a_gpu_when_the_study_runs_on_cuda(tmp_path):
    study = yaml.safe_load(yaml.safe_dump(TINY_STUDY))
    study["device"] = "cuda"  # planning needs no GPU, e.g. on a cluster's login node
    with snakemake_dag(tmp_path, study) as dag:
        rules = {rule.name: rule for rule in dag.workflow_api._workflow.rules}
        gpus = {name: rules[name].resources["gpu"].value for name in ("train", "evaluate", "language", "accuracy",
                                                                      "study_figure")}
    assert gpus == {"train": 1, "evaluate": 1, "language": 0, "accuracy": 0, "study_figure": 0}


def test_the_report_shows_every_figure_in_headless_chromium(finished_study):
    from report_check import OpenReport, browser_available

    if not browser_available():
        pytest.skip("needs selenium, chromium and chromedriver (make browser)")
    workdir, study = finished_study
    snakemake(workdir, study, "--report", "report.html")
    with OpenReport(workdir / "report.html") as report:
        page = report.landing_page  # opens on the study's summary
        shown = report.shown_figures()
    expected = {p.name for p in (workdir / "results" / "tiny" / "figures").rglob("*.png")}
    assert expected and set(shown) == expected
    assert all(width > 100 and height > 100 for width, height in shown.values()), shown
    assert "Summary\n2 runs (0 failed): mixer attention, mamba" in page
    summary = pd.read_parquet(workdir / "results" / "tiny" / "report" / "summary.parquet")
    for mixer in ("attention", "mamba"):
        accuracy = summary[(summary.mixer == mixer) & (summary.quantity == "accuracy")].value.item()
        assert f"\n{mixer} {accuracy:.3f} " in page


def test_load_study_reads_every_table_of_the_finished_study(finished_study):
    from tinylang.results import load_study

    workdir, _ = finished_study
    results = load_study(workdir / "results" / "tiny")
    tables = results.tables()
    assert set(tables) == {p.stem for p in (workdir / "results" / "tiny" / "study").glob("*.parquet")}
    for name, frame in tables.items():
        on_disk = pd.read_parquet(workdir / "results" / "tiny" / "study" / f"{name}.parquet")
        pd.testing.assert_frame_equal(frame.drop(columns="study"), on_disk)
        assert (frame["study"] == "tiny").all()
    assert set(results.runs["run"]) == {"attention", "mamba"} and set(results.selection["mixer"]) == {"attention", "mamba"}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and "logs" not in p.parts}


def test_a_truncated_checkpoint_fails_only_its_job_and_the_log_names_it(tmp_path, tiny_study, finished_tiny_study):
    """A finished study (a copy of the session's), then a checkpoint truncated on disk: the next
    run that needs it fails in that job, whose log names the file and the remedy; no other
    output is lost (the failed job's other tables stay in the evaluation cache), the other run's
    unchanged evaluators are read from the cache, and following the remedy re-plans training of
    that run only."""
    tmp_path = copy_finished_study(finished_tiny_study, tmp_path / "study")
    out = tmp_path / "results" / "tiny"
    bad = out / "runs" / "attention" / "checkpoints" / "step12.pt"
    truncate(bad, keep=0.1)
    before = snapshot(out)
    mamba_behaviour = pd.read_parquet(out / "runs" / "mamba" / "eval" / "step12" / "behaviour.parquet")

    tiny_study["evaluators"]["probes"]["num_examples"] = 24  # re-plans the final checkpoints' evaluations
    second = run_snakemake(tmp_path, tiny_study, "--keep-going", check=False)
    assert second.returncode != 0
    job_log = (out / "logs" / "evaluate" / "attention" / "step12.log").read_text()
    assert f"CheckpointError: checkpoint {bad.relative_to(tmp_path)}" in job_log
    assert "is truncated or corrupt" in job_log
    remedy = f"snakemake --cores all --forcerun {bad.parent.relative_to(tmp_path)}"
    assert remedy in job_log
    assert "Error in rule evaluate" in second.stdout + second.stderr

    mamba_log = (out / "logs" / "evaluate" / "mamba" / "step12.log").read_text()
    for name in ("behaviour", "interventions"):
        assert f"mamba: {name} of checkpoint 12 read from the evaluation cache" in mamba_log
    assert "mamba: probes on 24 test examples of checkpoint 12" in mamba_log  # the changed one is computed
    pd.testing.assert_frame_equal(mamba_behaviour,
                                  pd.read_parquet(out / "runs" / "mamba" / "eval" / "step12" / "behaviour.parquet"))

    after = snapshot(out)
    failed_job = "runs/attention/eval/step12/"
    assert {path for path in set(before) - set(after) if not path.startswith(failed_job)} <= {
        path for path in before if path.startswith("runs/mamba/eval_cache/step12/probes-")}  # replaced entry
    kept = {path.split("/")[-1].split("-")[0] for path in after if path.startswith("runs/attention/eval_cache/step12/")}
    assert kept == {"behaviour", "interventions", "attention", "probes"}  # nothing computed was lost
    rewritten = ("runs/mamba/eval/step12/", "runs/mamba/eval_cache/step12/probes-", "benchmarks/evaluate/",
                 "figures/interventions_mamba.")  # (--keep-going: what needs only mamba's tables runs)
    for path, stat in before.items():
        if not path.startswith((failed_job, *rewritten)):  # the re-planned jobs' outputs
            assert after[path] == stat, path  # untouched, the truncated checkpoint included

    # Following the remedy (with the study's configfile) trains that run again; Snakemake then
    # plans what was computed from it (run only up to training here: the rest is ordinary).
    folder = str(bad.parent.relative_to(tmp_path))
    run_snakemake(tmp_path, tiny_study, "--forcerun", folder, "--until", "train")
    load_checkpoint(bad)
    summary = snakemake_summary(tmp_path, tiny_study)
    pending = set(summary.loc[summary["plan"] != "no update", ["output_file", "rule"]].itertuples(index=False))
    assert {rule for _, rule in pending} <= {"evaluate", "training_curves", "accuracy", "attribution",
                                             "intervention_heatmap", "study_tables", "study_figure", "study_summary"}
    assert not any("/runs/mamba/" in path for path, _ in pending)  # the other run is untouched
