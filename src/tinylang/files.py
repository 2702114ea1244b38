"""Writing a file so that a killed job leaves the old file (or none), never half of one: the one
way tinylang writes its outputs (tables, checkpoints, run status, training state)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | os.PathLike, durable: bool = False, previous: Path | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block succeeds it is renamed to
    ``path``. ``durable``: flushed to disk before the rename (it must survive a crash of the
    machine, not only of the job). ``previous``: the file ``path`` held is kept there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failed write


__all__ = ["atomic_file"]
