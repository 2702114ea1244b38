"""Reading a Snakemake job (the ``snakemake`` object a rule's script receives) without importing
Snakemake: a job is anything with ``input``, ``output``, ``params``, ``wildcards``, ``log`` and
``threads`` attributes, so a test passes a ``types.SimpleNamespace``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Job(Protocol):
    input: Any
    output: Any
    params: Any
    wildcards: Any
    log: Any
    threads: int


def log_file(job: Job) -> Path | None:
    """The rule's log file, if it declares one."""
    logs = list(getattr(job, "log", None) or [])
    return Path(logs[0]) if logs else None


def tracking_of(job: Job) -> Any:
    """The study's ``tracking`` section (a ``TrackingConfig``; None when off). Read from the job's
    config, not its params: tracking changes no output, so turning it on must re-run nothing."""
    from tinylang.tracking import TrackingConfig

    config = getattr(job, "config", None) or {}
    tracking = TrackingConfig.model_validate(config.get("tracking") or {})
    return tracking if tracking.backend else None


def compile_of(job: Job) -> Any:
    """The study's ``compile`` choice (``CompileChoice``). Read from the job's config, not its
    params: like threads it changes how a run is computed, not what, so changing it re-runs nothing."""
    from pydantic import TypeAdapter, ValidationError

    from tinylang.training.config import CompileChoice

    value = (getattr(job, "config", None) or {}).get("compile", False)
    try:
        return TypeAdapter(CompileChoice).validate_python(value)
    except ValidationError:
        raise ValueError(f"compile: {value!r} is not one of false, true, inductor, cudagraphs, aot_eager") from None


def study_of(job: Job) -> str:
    return (getattr(job, "config", None) or {}).get("study", "")


def figure_outputs(job: Job) -> tuple[Path, list[Path]]:
    """A figure rule's saved table and its image files (png, then pdf)."""
    return Path(job.output.table), [Path(job.output.png), Path(job.output.pdf)]


__all__ = ["Job", "compile_of", "figure_outputs", "log_file", "study_of", "tracking_of"]
