"""Training: the train config, learning-rate schedules and the training loop (the loop and
schedules, with torch, imported on first use)."""

from __future__ import annotations

from tinylang.lazy import lazy_attributes

from .config import TrainConfig

_LAZY = {"train_run": "loop", "lr_lambda": "schedules"}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["TrainConfig", "lr_lambda", "train_run"]
