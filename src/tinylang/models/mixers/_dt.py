"""The step-size initialisation the state-space mixers share (Mamba, Mamba-2, H3): ``dt``
log-uniform in ``[dt_min, dt_max]``, stored as its log or behind a softplus."""

from __future__ import annotations

import math

import torch


def random_log_dt(n: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """``log dt`` for ``n`` channels, ``dt`` log-uniform in ``[dt_min, dt_max]``."""
    return torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def inverse_softplus(t: torch.Tensor) -> torch.Tensor:
    """The ``b`` with ``softplus(b) = t`` (``t > 0``), so a softplus of a bias starts at ``t``."""
    return t + torch.log(-torch.expm1(-t))
