"""Experiment tracking, off by default: each run's config, training curve and headline
evaluation results sent to MLflow, TensorBoard and/or Weights & Biases through their own
client libraries (extras: ``pip install 'tinylang[tracking]'``).

The train stage opens one tracked run per training run and logs its log rows as they are
written; the study-tables stage reopens each run (its ids are kept in ``runs/<run>/tracking.json``)
and adds the accuracy and Attrib over checkpoints and the final accuracy per split. Tracking never
changes what a rule computes, so turning it on or off re-runs nothing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, field_validator

from tinylang.strict import StrictModel
from tinylang.tracking.backends import BACKENDS, Backend

log = logging.getLogger("tinylang.tracking")
IDS_FILE = "tracking.json"  # in a run's folder: backend → the id of its tracked run


class TrackingConfig(StrictModel):
    """The study's ``tracking:`` section."""

    backend: Annotated[list[str], WithJsonSchema({
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "none, one backend or a list of them: mlflow, tensorboard, wandb"})] = Field(default_factory=list)
    project: str | None = None  # the MLflow experiment / W&B project; None: the study's name
    dir: str | None = None  # local records (file store, event files, offline runs); None: results/<study>/tracking
    mlflow_uri: str | None = None  # None: a file store in <dir>/mlruns; e.g. sqlite:///mlflow.db or a server
    wandb_mode: Literal["offline", "online"] = "offline"  # offline: upload later with `wandb sync`

    @field_validator("backend", mode="before")
    @classmethod
    def _backends(cls, value: Any) -> list[str]:
        names = [] if value in (None, "none") else [value] if isinstance(value, str) else list(value)
        for name in names:
            backend = BACKENDS.get(BACKENDS.known(name))
            if importlib.util.find_spec(backend.package) is None:
                raise ValueError(f"tracking backend {name!r} needs the {backend.package} package: "
                                 f"pip install 'tinylang[tracking]' (or pip install {backend.requirement})")
        return names

    def root(self, study_dir: Path) -> Path:
        return Path(self.dir) if self.dir else study_dir / "tracking"


class RunTracker:
    """The tracked run of one training run in every backend the study names."""

    def __init__(self, backends: list[Backend]):
        self.backends = backends
        self.failed = False  # set where the run failed without an exception (a diverged loss)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``; a backend that fails is reported once and then left out."""
        for backend in list(self.backends):
            try:
                backend.log(dict(metrics), step)
            except Exception as err:  # tracking must never cost a training run
                log.warning("tracking: %s failed to log (%s: %s); not logging to it again",
                            backend.name, type(err).__name__, err)
                self.backends.remove(backend)

    def ids(self) -> dict[str, str]:
        return {backend.name: backend.id for backend in self.backends}


@contextmanager
def tracked_run(config: TrackingConfig, study: str, study_dir: Path, run: str, ids_file: Path,
                params: Mapping[str, Any] | None = None, *, resume: bool = False) -> Iterator[RunTracker]:
    """The tracked run of ``run`` (a new one, or with ``resume`` the one ``ids_file`` names),
    finished on exit (failed where the body raised or set ``failed``). Writes the ids to ``ids_file``."""
    ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    backends = []
    for name in config.backend:
        backend = BACKENDS.get(name)(config, config.root(Path(study_dir)), config.project or study)
        backend.start(run, dict(params or {}), ids.get(name) if resume else None)
        backends.append(backend)
    tracker = RunTracker(backends)
    ids_file.parent.mkdir(parents=True, exist_ok=True)
    ids_file.write_text(json.dumps(tracker.ids(), indent=1))
    ok = False
    try:
        yield tracker
        ok = not tracker.failed
    finally:
        for backend in tracker.backends:
            backend.finish(ok)


def flat_params(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model": {"d_model": 64}}`` → ``{"model.d_model": 64}``: the form every backend shows."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flat_params(name, value) if isinstance(value, Mapping) else {name: value})
    return flat


def log_study_results(config: TrackingConfig, study: str, study_dir: Path, tables: Mapping[str, Any]) -> None:
    """Add each tracked run's evaluation to its record: accuracy and Attrib per checkpoint
    (``eval/<quantity>``, from the ``curves`` table) and the final accuracy of every split
    (``final/<split>/accuracy``, from ``run_accuracy``)."""
    if not config.backend:
        return
    curves, final = tables["curves"], tables["run_accuracy"]
    for run in sorted(set(curves["run"]) | set(final["run"])):
        ids_file = Path(study_dir) / "runs" / run / IDS_FILE
        if not ids_file.exists():
            log.info("tracking: run %s has no tracked record (trained before tracking was on); skipped", run)
            continue
        with tracked_run(config, study, study_dir, run, ids_file, resume=True) as tracker:
            for step, rows in curves[curves["run"] == run].dropna(subset=["value"]).groupby("step"):
                tracker.log({f"eval/{q}": float(v) for q, v in zip(rows["quantity"], rows["value"])}, int(step))
            rows = final[(final["run"] == run) & final["value"].notna()]
            for step, at_step in rows.groupby("step"):
                tracker.log({f"final/{s}/{m}": float(v) for s, m, v in
                             zip(at_step["split"], at_step["metric"], at_step["value"])}, int(step))


__all__ = ["IDS_FILE", "TrackingConfig", "RunTracker", "flat_params", "log_study_results", "tracked_run"]
