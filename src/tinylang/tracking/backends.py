"""One class per tracking backend, registered by the name ``tracking.backend`` uses. Each
imports its client library only when a run is tracked with it."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from tinylang.registry import Registry


class Backend:
    """A tracked run in one backend: ``start`` (new, or resumed by id), ``log``, ``finish``."""

    name: ClassVar[str]
    package: ClassVar[str]  # the client library's import name, checked when the study is validated
    requirement: ClassVar[str]  # what to pip install

    def __init__(self, config: Any, root: Path, project: str):
        self.config, self.root, self.project = config, root, project
        self.id = ""

    def start(self, run: str, params: dict[str, Any], resume_id: str | None) -> None:
        raise NotImplementedError

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, ok: bool) -> None:
        raise NotImplementedError


BACKENDS: Registry[type[Backend]] = Registry("tracking backend", base=Backend)


@BACKENDS.register("mlflow")
class MLflow(Backend):
    """An MLflow run per training run in experiment ``project``; a local file store by default."""

    name, package, requirement = "mlflow", "mlflow", "mlflow-skinny"

    def start(self, run, params, resume_id):
        # MLflow 3 keeps its file store only on request; it is what needs no server or database.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a cluster node may have no network
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(self.config.mlflow_uri or (self.root / "mlruns").resolve().as_uri())
        if resume_id:
            self.id = resume_id
            return
        experiment_id = self._experiment_id()
        self.id = self.client.create_run(experiment_id, run_name=run, tags={"tinylang.run": run}).info.run_id
        self.client.log_batch(self.id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        for _ in range(2):  # parallel training jobs may create the experiment at the same time
            experiment = self.client.get_experiment_by_name(self.project)
            if experiment is not None:
                return experiment.experiment_id
            try:
                return self.client.create_experiment(self.project)
            except MlflowException:
                continue
        raise RuntimeError(f"could not create MLflow experiment {self.project!r}")

    def log(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def finish(self, ok):
        self.client.set_terminated(self.id, "FINISHED" if ok else "FAILED")


@BACKENDS.register("tensorboard")
class TensorBoard(Backend):
    """Event files in ``<dir>/tensorboard/<run>``; the params as a JSON text summary ``params``."""

    name, package, requirement = "tensorboard", "tensorboard", "tensorboard"

    def start(self, run, params, resume_id):
        from torch.utils.tensorboard import SummaryWriter

        self.id = resume_id or str(self.root / "tensorboard" / run)
        self.writer = SummaryWriter(self.id)
        if params:
            self.writer.add_text("params", json.dumps(params, sort_keys=True, default=str))

    def log(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, ok):
        self.writer.close()


@BACKENDS.register("wandb")
class WandB(Backend):
    """A W&B run per training run in project ``project``; offline by default (``wandb sync``)."""

    name, package, requirement = "wandb", "wandb", "wandb"

    def start(self, run, params, resume_id):
        import wandb

        self.root.mkdir(parents=True, exist_ok=True)
        self.id = resume_id or f"{run}-{uuid.uuid4().hex[:8]}"
        self.run = wandb.init(project=self.project, name=run, id=self.id, dir=str(self.root), config=params or None,
                              mode=self.config.wandb_mode, resume="allow", reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, metrics, step):
        self.run.log(metrics, step=step)

    def finish(self, ok):
        self.run.finish(exit_code=0 if ok else 1)
