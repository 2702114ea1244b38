"""The evaluate stage: every evaluator scheduled at one checkpoint of one run, in one job (one
process start-up, the checkpoint loaded once), each writing its own table to the checkpoint's
folder ``runs/<run>/eval/step<N>/<evaluator>.parquet``.

Each table is also kept in the run's evaluation cache (``runs/<run>/eval_cache/step<N>``),
under a key of everything it was computed from: the evaluator and its options, the checkpoint's
bytes (or the run's status, for a checkpoint a failed run never wrote), the language's files
and the versions of tinylang and torch. Snakemake re-runs the whole job when any evaluator of
the checkpoint changes (and deletes the folder first); the evaluators that did not change are
then read back from the cache instead of computed again. The cache lives outside the rule's
output, so neither a re-run nor a failed job deletes it; removing it only costs recomputation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tinylang.stages.context import stage_context
from tinylang.stages.job import Job, log_file
from tinylang.tables import TableError, read_table, write_table
from tinylang.targets import eval_table

RUN_COLUMNS = {"run": "str", "step": "int64", "split": "str"}
"""The columns ``evaluate`` puts in front of every evaluator's table, and their pandas dtypes."""
log = logging.getLogger("tinylang")


@dataclass(frozen=True)
class EvaluateSpec:
    """The evaluators of one checkpoint: name → validated options, in the study's order."""

    run: str
    step: int
    evaluators: Mapping[str, Any]  # name → tinylang.evaluation.evaluators.EvaluatorOptions
    checkpoints_dir: Path
    language_dir: Path
    out_dir: Path
    cache_dir: Path | None = None  # None: nothing is cached
    status: Path | None = None
    device: str = "auto"
    threads: int = 1
    log: Path | None = None

    @classmethod
    def from_job(cls, job: Job) -> EvaluateSpec:
        return cls.build(job.wildcards.run, int(job.wildcards.step), job.params.evaluators,
                         Path(job.input.checkpoints), Path(job.input.language), Path(job.output[0]),
                         cache_dir=Path(job.params.cache), status=Path(job.input.status), device=job.params.device,
                         threads=job.threads, log=log_file(job))

    @classmethod
    def build(cls, run: str, step: int, evaluators: Mapping[str, dict[str, Any] | None], *args: Any,
              **kwargs: Any) -> EvaluateSpec:
        """The spec with each evaluator's options validated (a KeyError names the allowed evaluators)."""
        from tinylang.evaluation.evaluators import parse_evaluator_options

        if not evaluators:
            raise ValueError(f"no evaluator is scheduled at step {step} of run {run!r}: see the study's `evaluators`")
        parsed = {name: parse_evaluator_options(name, options) for name, options in evaluators.items()}
        return cls(run, int(step), parsed, *args, **kwargs)

    def table(self, evaluator: str) -> Path:
        return eval_table(self.out_dir, evaluator)


def evaluate(spec: EvaluateSpec) -> dict[str, pd.DataFrame]:
    """Each of ``spec.evaluators`` on checkpoint ``spec.step``: its table, with ``run``, ``step``
    and ``split`` in front, written to ``spec.table(name)``. A table is empty, with the columns
    the evaluator declares, when the run failed before that step (the checkpoint was never
    written). One evaluator's error does not stop the others (their tables are cached); the
    first error is raised once all have run."""
    with stage_context(spec.log, spec.device, spec.threads):
        checkpoint = _Checkpoint(spec)
        tables, errors = {}, []
        for name, options in spec.evaluators.items():
            try:
                tables[name] = _evaluator_table(spec, name, options, checkpoint)
            except Exception as err:  # noqa: BLE001 (re-raised below, once the others have run)
                log.error("%s: %s failed on checkpoint %s: %s", spec.run, name, spec.step, err)
                errors.append(err)
        if errors:
            raise errors[0]
        return tables


def _evaluator_table(spec: EvaluateSpec, name: str, options: Any, checkpoint: _Checkpoint) -> pd.DataFrame:
    """Evaluator ``name``'s table, from the cache when its key is there, written to its output."""
    cached = _cache_file(spec, name, checkpoint.cache_key(name, options))
    table = _read_cached(cached, spec, name)
    if table is None:
        table = checkpoint.table(name, options)
        if cached is not None:
            _store(cached, table)
    write_table(table, spec.table(name))
    return table


def _read_cached(cached: Path | None, spec: EvaluateSpec, name: str) -> pd.DataFrame | None:
    """The cached table, or None when there is none (a damaged entry is dropped: it is computed again)."""
    if cached is None or not cached.exists():
        return None
    try:
        table = read_table(cached)
    except TableError:
        log.warning("%s: the cached %s table %s is damaged; computing it again", spec.run, name, cached)
        cached.unlink()
        return None
    log.info("%s: %s of checkpoint %s read from the evaluation cache (%s)", spec.run, name, spec.step, cached)
    return table


class _Checkpoint:
    """One run's checkpoint at one step, loaded once for every evaluator that needs it."""

    def __init__(self, spec: EvaluateSpec):
        self.spec, self._model, self._inputs = spec, None, None
        self._splits: dict[str, Any] = {}  # split → its tensors, read once for every evaluator

    def table(self, name: str, options: Any) -> pd.DataFrame:
        from tinylang.evaluation.evaluators import EVALUATORS, empty_table

        evaluator = EVALUATORS.get(name)
        meta, splits = _meta_and_splits(self.spec.language_dir, options.splits)
        if _never_written(self.spec, name):
            return empty_table({**RUN_COLUMNS, **evaluator.columns(options)})
        model = self.model()
        if not evaluator.applies_to(model.model_config):
            raise ValueError(f"evaluator {name!r} does not apply to mixer {model.model_config.mixer!r}")
        tables = []
        for split in splits:
            tensors = self.examples(split, options.num_examples)
            table = evaluator.run(model, tensors, meta, options)
            table.insert(0, "split", split)
            tables.append(table)
            log.info("%s: %s on %d %s examples of checkpoint %s", self.spec.run, name, len(tensors), split, self.spec.step)
        table = pd.concat(tables, ignore_index=True)
        table.insert(0, "step", self.spec.step)
        table.insert(0, "run", self.spec.run)
        return table

    def model(self):
        if self._model is None:
            from tinylang.device import resolve_device
            from tinylang.models.checkpoint import load_run_checkpoint

            spec = self.spec
            self._model, _ = load_run_checkpoint(spec.checkpoints_dir, spec.step, spec.run,
                                                 device=resolve_device(spec.device))
        return self._model

    def examples(self, split: str, max_examples: int):
        """The first ``max_examples`` of ``split``, as tensors."""
        import torch

        from tinylang.languages.dataset import load_tensors

        if split not in self._splits:
            self._splits[split] = load_tensors(self.spec.language_dir, split)
        tensors = self._splits[split]
        return tensors.subset(torch.arange(min(len(tensors), max_examples)))

    def cache_key(self, name: str, options: Any) -> str:
        """A digest of everything evaluator ``name``'s table is computed from (which checkpoints
        the evaluator analyses is not: it changes no table)."""
        if self._inputs is None:
            self._inputs = _inputs_fingerprint(self.spec)
        described = {"evaluator": name, "options": options.model_dump(mode="json", exclude={"checkpoints"}),
                     **self._inputs}
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _inputs_fingerprint(spec: EvaluateSpec) -> dict[str, Any]:
    """What every evaluator of the checkpoint reads: the checkpoint's bytes (or the run's status
    when it is missing), the language's files, the run, the device and the code's versions."""
    import torch

    import tinylang
    from tinylang.models.checkpoint import checkpoint_path

    path = checkpoint_path(spec.checkpoints_dir, spec.step)
    status = spec.status.read_text() if spec.status is not None and spec.status.exists() else None
    language = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in spec.language_dir.iterdir())
    return {"run": spec.run, "step": spec.step, "device": spec.device, "language": language,
            "checkpoint": _digest(path) if path.exists() else None, "status": None if path.exists() else status,
            "tinylang": tinylang.__version__, "torch": torch.__version__}


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _cache_file(spec: EvaluateSpec, name: str, key: str) -> Path | None:
    return None if spec.cache_dir is None else spec.cache_dir / f"{name}-{key}.parquet"


def _store(path: Path, table: pd.DataFrame) -> None:
    """Keep ``table`` at ``path``, replacing the evaluator's older entries for this checkpoint."""
    name = path.name.rsplit("-", 1)[0]
    stale = re.compile(re.escape(name) + r"-[0-9a-f]{16}\.parquet")
    if path.parent.is_dir():
        for old in path.parent.iterdir():
            if stale.fullmatch(old.name) and old != path:
                old.unlink()
    write_table(table, path)


def _never_written(spec: EvaluateSpec, name: str) -> bool:
    """Whether checkpoint ``spec.step`` is missing because the run failed before it (its table is then empty)."""
    from tinylang.models.checkpoint import checkpoint_path
    from tinylang.training.status import read_run_status

    if spec.status is None or checkpoint_path(spec.checkpoints_dir, spec.step).exists():
        return False
    status = read_run_status(spec.status)
    if status["status"] != "failed" or spec.step < int(status["step"]):
        return False
    log.warning("%s: the run failed at step %s (%s), so checkpoint %s does not exist; writing an empty %s table",
                spec.run, status["step"], status.get("reason"), spec.step, name)
    return True


def _meta_and_splits(language_dir: Path, splits: list[str] | None) -> tuple[dict[str, Any], list[str]]:
    """The language's meta and ``splits`` (None: every split of the language), an error if it lacks one."""
    from tinylang.languages import read_meta

    meta = read_meta(language_dir)
    known = list(meta["splits"])
    splits = known if splits is None else splits
    unknown = [split for split in splits if split not in known]
    if unknown:
        raise ValueError(f"split(s) {unknown} not in the language's splits {known}")
    return meta, splits


__all__ = ["RUN_COLUMNS", "EvaluateSpec", "evaluate"]
