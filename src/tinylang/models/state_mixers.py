"""State mixers (per-position feed-forward layers): MLP and GLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import STATE_MIXERS


@STATE_MIXERS.register("mlp")
class MLP(nn.Module):
    """Two-layer GELU feed-forward network."""

    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.fc_in = nn.Linear(d_model, ratio * d_model)
        self.fc_out = nn.Linear(ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


@STATE_MIXERS.register("glu")
class GLU(nn.Module):
    """Gated (SwiGLU) feed-forward network."""

    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.fc_in = nn.Linear(d_model, 2 * ratio * d_model)
        self.fc_out = nn.Linear(ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.fc_in(x).chunk(2, dim=-1)
        return self.fc_out(value * F.silu(gate))


@STATE_MIXERS.register("none")
class NoStateMixer:
    """Marker: the block has no state mixer (Mamba-style blocks)."""
