"""Self-contained checkpoints: loadable on CPU without any training state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

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
        "vocab_size": model.config.vocab_size,
        "max_len": model.config.max_len,
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint payload; CheckpointError names the file on any problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (the train rule writes it)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    return payload


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """The model stored at ``path`` (in eval mode, on ``device``) and the payload's metadata."""
    payload = read_checkpoint(path)
    config = ModelConfig(**payload["model_config"])
    model = build_model(config, payload["vocab_size"], payload["max_len"])
    model.load_state_dict(payload["state_dict"])
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval(), info
