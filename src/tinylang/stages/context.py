"""What every stage does around its work: log to the rule's log file, hold a GPU slot, set
torch's thread count."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("tinylang")


@contextmanager
def stage_logging(log_file: str | os.PathLike | None) -> Iterator[None]:
    """Send tinylang's log records to ``log_file`` (and stderr) for the duration of a stage;
    an exception is logged there before it propagates."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger("tinylang")
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except Exception:
        log.exception("stage failed")
        raise
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


@contextmanager
def kept_log(path: Path) -> Iterator[None]:
    """Also append tinylang's log records to ``path`` for the block: a log outside the rule's
    outputs, which Snakemake deletes before it reruns a job, so an interrupted attempt's lines
    survive into the next attempt (``earlier_attempts``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("tinylang")
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def earlier_attempts(path: Path) -> None:
    """Copy the lines an interrupted earlier attempt left in ``path`` into this attempt's log."""
    if path.is_file() and path.stat().st_size:
        log.info("an earlier attempt of this job was interrupted; its log:\n%s\n(end of the earlier attempt's log)",
                 path.read_text().rstrip())


@contextmanager
def stage_context(log_file: str | os.PathLike | None, device: str | None = None,
                  threads: int | None = None) -> Iterator[None]:
    """``stage_logging``, and for a stage that runs a model a GPU slot (``device``) and
    ``threads`` torch threads."""
    with stage_logging(log_file):
        if device is None:
            yield
            return
        import torch

        from tinylang.device import gpu_slot

        with gpu_slot(device):
            if threads:
                torch.set_num_threads(max(1, int(threads)))
            yield


__all__ = ["stage_context", "stage_logging"]
