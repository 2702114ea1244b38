"""The stages of one run: generate a language, train a model (or a pack of runs). Each
takes one typed spec, validated once when it is built (``from_job`` for a Snakemake job)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylang.stages.context import earlier_attempts, kept_log, stage_context
from tinylang.stages.job import Job, compile_of, log_file, study_of, tracking_of

ATTEMPTS_LOG = "attempts.log"  # in a run's partial/: the log lines of attempts that were interrupted
log = logging.getLogger("tinylang")


@dataclass(frozen=True)
class LanguageSpec:
    config: Any  # a tinylang.languages language config
    out_dir: Path
    log: Path | None = None

    @classmethod
    def from_job(cls, job: Job) -> LanguageSpec:
        from tinylang.languages import parse_language_config

        return cls(parse_language_config(job.params.config), Path(job.output[0]), log_file(job))


def generate_language(spec: LanguageSpec) -> None:
    """Write the language's splits and meta.json to ``spec.out_dir``."""
    from tinylang.languages import write_language

    with stage_context(spec.log):
        write_language(spec.config, spec.out_dir)
        log.info("wrote language %s to %s", spec.config.type, spec.out_dir)


@dataclass(frozen=True)
class TrainSpec:
    run: str
    model: Any  # tinylang.models.ModelConfig
    train: Any  # tinylang.training.TrainConfig
    language_dir: Path
    checkpoints_dir: Path
    train_log: Path
    status: Path | None = None
    device: str = "auto"
    threads: int = 1
    progress: bool = True
    log: Path | None = None
    tracking: Any = None  # a tinylang.tracking.TrackingConfig; None: not tracked
    study: str = ""
    compile: Any = False  # a tinylang.training.config.CompileChoice

    @classmethod
    def from_job(cls, job: Job) -> TrainSpec:
        from tinylang.models import ModelConfig
        from tinylang.training import TrainConfig

        return cls(job.wildcards.run, ModelConfig(**job.params.model), TrainConfig(**job.params.train),
                   Path(job.input.language), Path(job.output.checkpoints), Path(job.output.log),
                   Path(job.output.status), job.params.device, job.threads, log=log_file(job),
                   tracking=tracking_of(job), study=study_of(job), compile=compile_of(job))

    @property
    def run_dir(self) -> Path:
        return self.checkpoints_dir.parent


def train(spec: TrainSpec) -> dict[str, Any]:
    """Train one run. Works in ``<run>/partial`` (which survives a killed job, so a rerun
    resumes from its last resumable state) and moves the finished outputs into place.

    With ``spec.status``, a run whose loss became NaN or infinite is a *failed run*, not a failed
    stage: its checkpoints before the fault and its log so far are moved into place and the
    status file says so (``tinylang.training.status``). Without it the fault is raised
    (``TrainingDiverged``). Returns the status."""
    with stage_context(spec.log, spec.device, spec.threads):
        with _run_session(spec) as (partial, tracker):
            result = _train_in(spec, partial, tracker)
            _record_outcome(tracker, result)
        if spec.status is not None:
            _write_status(spec, result)
        return result


@contextmanager
def _run_session(spec: TrainSpec) -> Iterator[tuple[Path, Any]]:
    """The run's ``partial`` folder, locked until the outputs are moved out of it, with this
    job's log kept there beside the earlier attempts', and the run's tracked record (None
    when untracked)."""
    from tinylang.training.state import trainer_lock

    partial = spec.run_dir / "partial"
    with trainer_lock(partial):
        earlier_attempts(partial / ATTEMPTS_LOG)
        with kept_log(partial / ATTEMPTS_LOG), _tracked(spec, partial) as tracker:
            yield partial, tracker


def _record_outcome(tracker: Any, result: dict[str, Any]) -> None:
    if tracker is not None:
        tracker.failed = result["status"] == "failed"


def _write_status(spec: TrainSpec, result: dict[str, Any]) -> None:
    from tinylang.training.status import write_run_status

    write_run_status(result, spec.status)
    if result["status"] == "failed":
        log.warning("run %s is marked failed in %s; the workflow goes on without its later checkpoints",
                    spec.run, spec.status)


@contextmanager
def _tracked(spec: TrainSpec, partial: Path) -> Iterator[Any]:
    """The run's tracked record (a ``tinylang.tracking.RunTracker``; None when the study tracks
    nothing). An interrupted training resumes its record, as it resumes its state."""
    if spec.tracking is None:
        yield None
        return
    from tinylang.tracking import IDS_FILE, flat_params, tracked_run
    from tinylang.training.state import state_paths

    resuming = any(path.exists() for path in state_paths(partial))
    params = {"study": spec.study, "run": spec.run, "language": spec.language_dir.name,
              **flat_params("model", spec.model.model_dump(mode="json")),
              **flat_params("train", spec.train.model_dump(mode="json"))}
    with tracked_run(spec.tracking, spec.study, spec.run_dir.parents[1], spec.run, spec.run_dir / IDS_FILE,
                     params, resume=resuming) as tracker:
        yield tracker


TRACKED_COLUMNS = ("loss", "lr", "epoch", "steps_per_s", "tokens_per_s")  # of a train-log row


def _train_in(spec: TrainSpec, partial: Path, tracker: Any = None) -> dict[str, Any]:
    """Train ``spec``'s run in ``partial`` and move its outputs into place; the run's status.
    Each train-log row goes to ``tracker`` too, where the study tracks the run."""
    from tinylang.training import train_run
    from tinylang.training.loop import TrainingDiverged

    try:
        train_run(spec.model, spec.train, spec.language_dir, partial, device=spec.device, run_name=spec.run,
                  progress=spec.progress, lock=False, on_log=_tracker_log(tracker), compile=spec.compile)
    except TrainingDiverged as fault:
        if spec.status is None:
            raise
        return _moved_into_place(spec, partial, fault)
    return _moved_into_place(spec, partial, None)


def _tracker_log(tracker: Any):
    """What sends a train-log row to ``tracker`` (None when the run is not tracked)."""
    if tracker is None:
        return None
    return lambda row: tracker.log({f"train/{key}": row[key] for key in TRACKED_COLUMNS}, row["step"])


def _moved_into_place(spec: TrainSpec, partial: Path, fault: Any) -> dict[str, Any]:
    """The checkpoints and train log moved from ``partial`` to the rule's outputs; the run's
    status ("failed" with the fault's step, lr and reason when ``fault`` is a TrainingDiverged)."""
    result: dict[str, Any] = {"run": spec.run, "status": "ok"}
    if fault is not None:
        result.update(status="failed", step=fault.step, lr=fault.lr, reason=fault.reason,
                      checkpoints=fault.checkpoints)
    if spec.checkpoints_dir.exists():
        shutil.rmtree(spec.checkpoints_dir)
    os.replace(partial / "checkpoints", spec.checkpoints_dir)
    os.replace(partial / "train_log.parquet", spec.train_log)
    shutil.rmtree(partial, ignore_errors=True)
    return result


@dataclass(frozen=True)
class TrainPackSpec:
    """Runs trained together (``tinylang.training.packed``): each run's own ``TrainSpec``, and
    the job's device, threads and log."""

    runs: tuple[TrainSpec, ...]
    device: str = "auto"
    threads: int = 1
    log: Path | None = None

    @classmethod
    def from_job(cls, job: Job) -> TrainPackSpec:
        from tinylang.models import ModelConfig
        from tinylang.training import TrainConfig

        outputs = zip(job.params.runs, job.params.models, job.params.trains, job.output.checkpoints,
                      job.output.log, job.output.status)
        runs = tuple(TrainSpec(run, ModelConfig(**model), TrainConfig(**train), Path(job.input.language),
                               Path(checkpoints), Path(train_log), Path(status), job.params.device, job.threads,
                               tracking=tracking_of(job), study=study_of(job), compile=compile_of(job))
                     for run, model, train, checkpoints, train_log, status in outputs)
        return cls(runs, job.params.device, job.threads, log_file(job))


def train_pack(spec: TrainPackSpec) -> list[dict[str, Any]]:
    """Train ``spec.runs`` together, each as ``train`` would (its ``partial`` folder, kept log,
    tracked record, outputs and status); their statuses."""
    from tinylang.training.packed import PackedRun
    from tinylang.training.packed import train_pack as train_together

    with stage_context(spec.log, spec.device, spec.threads), ExitStack() as held:
        if spec.runs[0].compile:
            log.warning("compile: a pack's step is vmapped and runs uncompiled (compiling applies to runs trained alone)")
        sessions = [held.enter_context(_run_session(run)) for run in spec.runs]
        packed = [PackedRun(run.run, run.model, run.train, partial, _tracker_log(tracker))
                  for run, (partial, tracker) in zip(spec.runs, sessions)]
        faults = train_together(packed, spec.runs[0].language_dir, spec.device, spec.runs[0].progress, lock=False)
        results = [_moved_into_place(run, partial, faults[run.run]) for run, (partial, _) in zip(spec.runs, sessions)]
        for run, result, (_, tracker) in zip(spec.runs, results, sessions):
            _record_outcome(tracker, result)
            _write_status(run, result)
        return results


__all__ = ["LanguageSpec", "TrainPackSpec", "TrainSpec", "generate_language", "train", "train_pack"]
