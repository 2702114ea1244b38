"""Self-contained checkpoints: loadable on CPU without any training state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from tinylang.files import atomic_file
from tinylang.integrity import brief_error, is_intact, sealed

from .backbone import LanguageModel, build_model
from .config import ModelConfig

FORMAT = "tinylang-checkpoint-v1"


def checkpoint_path(checkpoints_dir: str | os.PathLike, step: int | str) -> Path:
    """Where a run's checkpoint at ``step`` lives: ``<checkpoints_dir>/step<step>.pt``."""
    return Path(checkpoints_dir) / f"step{int(step)}.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not a tinylang checkpoint."""


def save_checkpoint(path: Path, model: LanguageModel, step: int, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` at ``step`` atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_config": model.model_config.model_dump(mode="json"),
        "vocab_size": model.language_vocab_size,
        "max_len": model.config.max_len,
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_file(path) as tmp:
        torch.save(sealed(payload), tmp)


def _remedy(path: Path) -> str:
    """What to do about a bad checkpoint: a run's checkpoints are one Snakemake output (the
    folder); forcing it trains the run again, and Snakemake then redoes what depends on it."""
    if path.parent.name == "checkpoints":
        return (f"train the run again: snakemake --cores all --forcerun {path.parent} (add the study's "
                "--configfile if it has one)")
    return "delete it and write it again (tinylang.models.save_checkpoint)"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint payload, read with ``weights_only=True`` (tensors and plain data
    only: a checkpoint cannot run code). CheckpointError names the file and the remedy on any
    problem (missing, truncated, corrupt, or not a tinylang checkpoint)."""
    path = Path(path)
    if not path.is_file():
        hint = f"; {_remedy(path)}" if path.parent.name == "checkpoints" and path.parent.is_dir() else ""
        raise CheckpointError(f"checkpoint {path} does not exist (the train rule writes it){hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or corrupt files
        raise CheckpointError(
            f"checkpoint {path} ({path.stat().st_size} bytes) is truncated or corrupt "
            f"(torch.load: {brief_error(err)}); {_remedy(path)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file; {_remedy(path)}")
    if is_intact(payload) is False:
        raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match the SHA-256 written with "
                              f"it; {_remedy(path)}") from None
    return {k: v for k, v in payload.items() if k != "sha256"}


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """The model stored at ``path`` (in eval mode, on ``device``) and the payload's metadata."""
    path = Path(path)
    payload = read_checkpoint(path)
    try:
        config = ModelConfig(**payload["model_config"])
        model = build_model(config, payload["vocab_size"], payload["max_len"])
        model.load_state_dict(payload["state_dict"])
    except Exception as err:  # a missing key, a config this tinylang rejects, mismatched weights
        raise CheckpointError(
            f"checkpoint {path} does not hold a model this tinylang can build ({brief_error(err)}); {_remedy(path)}"
        ) from None
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval(), info


def load_run_checkpoint(checkpoints_dir: str | os.PathLike, step: int, run: str,
                        device: str | torch.device = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """``run``'s checkpoint at ``step``, once the file says it is that run at that step (a file
    copied or renamed into another run's folder or step is refused, not evaluated as it)."""
    path = checkpoint_path(checkpoints_dir, step)
    model, info = load_checkpoint(path, device)
    stored_run = (info.get("extra") or {}).get("run")
    if info.get("step") != int(step) or stored_run not in (None, "", run):
        raise CheckpointError(f"checkpoint {path} holds run {stored_run!r} at step {info.get('step')}, not run "
                              f"{run!r} at step {int(step)} (copied or renamed?); {_remedy(path)}")
    return model, info
