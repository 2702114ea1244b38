"""A causal depthwise short convolution with a recurrent (one token at a time) form.

Not a mixer (the leading underscore keeps it out of the automatic mixer imports); Based and
DeltaNet use it. For channel ``c`` and kernel ``w_c`` of size ``K``::

    y_t[c] = act( b[c] + sum_{j=0}^{K-1} w_c[j] * x_{t-K+1+j}[c] )

with ``x_s = 0`` for ``s < 0`` (or the stored inputs of an earlier segment). The recurrent state
is the last ``K - 1`` inputs, ``(batch, channels, K - 1)``, oldest first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortConv(nn.Module):
    """Depthwise causal ``Conv1d`` on ``(batch, length, channels)`` inputs, optional SiLU after."""

    def __init__(self, channels: int, kernel_size: int, bias: bool = True, activation: bool = False):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be at least 1, got {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)
        self.act = nn.SiLU() if activation else nn.Identity()

    @property
    def state_width(self) -> int:
        return self.kernel_size - 1

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        weight = self.conv.weight
        return torch.zeros(
            batch_size, self.channels, self.state_width,
            device=device if device is not None else weight.device,
            dtype=dtype if dtype is not None else weight.dtype,
        )

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, L, C)`` → ``(y (B, L, C), new_state (B, C, K-1))``."""
        u = x.transpose(1, 2)  # (B, C, L)
        if state is None:
            state = u.new_zeros(u.shape[0], self.channels, self.state_width)
        full = torch.cat([state.to(u.dtype), u], dim=-1)  # (B, C, K-1+L)
        y = F.conv1d(full, self.conv.weight, self.conv.bias, groups=self.channels)
        new_state = full[..., full.shape[-1] - self.state_width :]
        return self.act(y.transpose(1, 2)), new_state

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token ``x_t`` ``(B, C)`` → ``(y_t (B, C), new_state)``."""
        window = torch.cat([state, x_t.unsqueeze(-1)], dim=-1)  # (B, C, K)
        y = (window * self.conv.weight.squeeze(1)).sum(-1)
        if self.conv.bias is not None:
            y = y + self.conv.bias
        return self.act(y), window[..., 1:]
