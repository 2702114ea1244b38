"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable

from .config import TrainConfig


def lr_lambda(train_config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier at scheduler step ``step``, for ``torch.optim.lr_scheduler.LambdaLR``.

    - Warmup: ``step / warmup_steps`` for ``step < warmup_steps`` (from 0 up to 1; the
      usual convention, so the very first update, made at multiplier ``f(0)``, is a zero step
      when there is warmup).
    - Then, over the remaining ``total_steps - warmup_steps`` steps, ``constant`` stays at 1,
      ``linear`` falls linearly and ``cosine`` along a half cosine, both to ``min_lr_ratio``
      at ``step == total_steps`` (and stay there beyond it).

    The update that makes optimiser step ``s`` (1-based) uses ``f(s - 1)``.
    """
    warmup = int(train_config.warmup_steps)
    total = int(total_steps)
    floor = float(train_config.min_lr_ratio)
    schedule = train_config.schedule
    if schedule not in ("constant", "linear", "cosine"):
        raise ValueError(f"unknown schedule {schedule!r}; allowed: constant, linear, cosine")
    decay_steps = max(1, total - warmup)

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / decay_steps)
        if schedule == "linear":
            return 1.0 - (1.0 - floor) * progress
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier
