"""Training: the train config, learning-rate schedules and the training loop (the loop and
schedules, with torch, imported on first use)."""

from __future__ import annotations

import importlib

from .config import TrainConfig

_LAZY = {"train_run": "loop", "lr_lambda": "schedules"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = ["TrainConfig", "lr_lambda", "train_run"]
