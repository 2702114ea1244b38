"""Writing a file so that a killed job leaves the old file (or none), never half of one: the one
way tinylang writes its outputs (tables, checkpoints, run status, training state); and the
file locks that keep two processes off one resource (a GPU, a run's folder)."""

from __future__ import annotations

import fcntl
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


def try_lock(path: str | os.PathLike) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``path`` (created if missing), or None
    when another process holds it. The kernel releases the lock when the descriptor is closed or
    its process ends, however it ends (even SIGKILL). Opened read-only, so a lock file another
    user created is usable too."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
