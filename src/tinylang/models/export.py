"""Export a model as safetensors weights plus a JSON config, and load it back.

The exported folder holds ``model.safetensors`` (the weights; a head tied to the token
embedding is stored once) and ``config.json`` (the model config, the vocabulary size and
positional length ``build_model`` needs, the checkpoint step, the tinylang version). Neither file
can run code when read, and other tools read them without tinylang: safetensors from any
language, the config as plain JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

import tinylang

from .backbone import LanguageModel, build_model
from .checkpoint import load_checkpoint
from .config import ModelConfig

EXPORT_FORMAT = "tinylang-export-v1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def export_model(model: LanguageModel, out_dir: str | os.PathLike, step: int | None = None) -> Path:
    """Write ``model`` to ``out_dir`` (created) as ``model.safetensors`` and ``config.json``."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format": EXPORT_FORMAT,
        "model_config": model.model_config.model_dump(mode="json"),
        "vocab_size": model.language_vocab_size,
        "max_len": model.config.max_len,
        "step": step,
        "tinylang_version": tinylang.__version__,
    }
    save_model(model, str(out / WEIGHTS), metadata={"format": EXPORT_FORMAT})
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return out


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the model of a tinylang checkpoint (``runs/<run>/checkpoints/step<N>.pt``)."""
    model, info = load_checkpoint(Path(checkpoint))
    return export_model(model, out_dir, step=info.get("step"))


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """The model of an exported folder (in eval mode, on ``device``) and its config.json."""
    from safetensors.torch import load_model

    folder = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} does not exist: not an exported model folder "
                                    f"(write one with `tinylang export <checkpoint> {folder}`)")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / CONFIG} is not valid JSON ({err}); export the model again") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{folder / CONFIG} is not a {EXPORT_FORMAT} config; export the model again")
    model = build_model(ModelConfig(**config["model_config"]), config["vocab_size"], config["max_len"])
    load_model(model, str(folder / WEIGHTS), strict=True)
    return model.to(device).eval(), config


__all__ = ["EXPORT_FORMAT", "export_checkpoint", "export_model", "load_exported"]
