"""The resumable training state: what a killed run resumes from.

``train_state.pt`` is written atomically (a temporary file, flushed to disk, then renamed) and
the state it replaces is kept as ``train_state.prev.pt``, so a state file damaged after the fact
still leaves one to resume from. A state carries a *fingerprint* of what it was trained on (the
model config, the train config except fields that do not change what is trained, the language's
config hash and sizes); a run resumes only from a state of its own fingerprint."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tinylang.files import atomic_file, try_lock
from tinylang.integrity import brief_error, is_intact, sealed

log = logging.getLogger("tinylang.training")

LOCK_FILE = ".trainer.lock"  # flocked by the one trainer working in the folder
STATE_FILE = "train_state.pt"
PREV_STATE_FILE = "train_state.prev.pt"  # the state STATE_FILE replaced
STATE_FORMAT = "tinylang-train-state-v1"
STATE_KEYS = ("step", "model", "optimizer", "scheduler", "epoch_generator_state", "epoch", "pos", "torch_rng_state",
              "rows", "loss_sum", "pending_steps", "wall_time_s")
# Train-config fields that do not change what is trained: a state written under other values resumes.
NOT_FINGERPRINTED = {"state_every"}


class RunFolderInUse(RuntimeError):
    """Another trainer is working in this run's folder."""


@contextmanager
def trainer_lock(out_dir: Path) -> Iterator[None]:
    """Hold the run folder ``out_dir`` for one trainer for the block (an exclusive ``flock``, so
    a trainer killed in any way frees it); RunFolderInUse when another one holds it, e.g. the
    job of an earlier Snakemake that was killed with ``kill -9`` and left its job running."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = try_lock(out_dir / LOCK_FILE)
    if fd is None:
        raise RunFolderInUse(
            f"another trainer is working in {out_dir} (the job of an earlier, killed Snakemake may still run: "
            f"`fuser -v {out_dir / LOCK_FILE}` names it); let it finish or stop it, then rerun snakemake")
    try:
        yield
    finally:
        os.close(fd)


def state_paths(out_dir: Path) -> list[Path]:
    """The run's state files, newest first."""
    return [out_dir / STATE_FILE, out_dir / PREV_STATE_FILE]


def fingerprint(model_config: Any, train_config: Any, language_hash: str | None, vocab_size: int, max_len: int,
                train_size: int) -> dict[str, Any]:
    """What a state must have been trained on to be resumed."""
    return {
        "model_config": model_config.model_dump(mode="json"),
        "train_config": train_config.model_dump(mode="json", exclude=NOT_FINGERPRINTED),
        "language_config_hash": language_hash,
        "vocab_size": vocab_size,
        "max_len": max_len,
        "train_size": train_size,
    }


def write_state(path: Path, prev: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, keeping the state it replaces as ``prev``."""
    with atomic_file(path, durable=True, previous=prev) as tmp:
        torch.save(sealed({"format": STATE_FORMAT, **state}), tmp)


def remove_states(out_dir: Path) -> None:
    for path in state_paths(out_dir):
        path.unlink(missing_ok=True)


def read_state(paths: list[Path], expected: dict[str, Any], label: str) -> tuple[dict[str, Any] | None, Path | None]:
    """The first of ``paths`` (newest first) holding a readable state of fingerprint
    ``expected``, and its path; each one skipped is logged with the reason."""
    for path in paths:
        if path.exists() and (state := _usable(path, expected, label)) is not None:
            return state, path
    if any(path.exists() for path in paths):
        log.warning("run %s: no usable train state in %s; starting over", label, paths[0].parent)
    return None, None


def _usable(path: Path, expected: dict[str, Any], label: str) -> dict[str, Any] | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or truncated files
        log.warning("run %s: train state %s is unreadable (%s); ignoring it", label, path, brief_error(err))
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        log.warning("run %s: %s is not a %s file; ignoring it", label, path, STATE_FORMAT)
        return None
    if is_intact(state) is False:
        log.warning("run %s: train state %s is damaged (its contents do not match the SHA-256 written with it); "
                    "ignoring it", label, path)
        return None
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        log.warning("run %s: train state %s lacks %s; ignoring it", label, path, ", ".join(missing))
        return None
    saved = state.get("fingerprint", {})
    if saved != expected:
        log.warning("run %s: %s was made by a different configuration (differs in %s); ignoring it",
                    label, path, ", ".join(_differences(saved, expected)) or "format")
        return None
    return state


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} → {b!r}")
    return out


__all__ = ["LOCK_FILE", "NOT_FINGERPRINTED", "PREV_STATE_FILE", "RunFolderInUse", "STATE_FILE", "STATE_FORMAT",
           "fingerprint", "read_state", "remove_states", "state_paths", "trainer_lock", "write_state"]
