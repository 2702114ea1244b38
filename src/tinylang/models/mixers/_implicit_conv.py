"""Zoology's implicit long convolution: a per-channel causal filter as long as ``l_max``, made by
a small MLP from a fixed table of positions (BaseConv's long filter; Poli et al. 2023 style).

Not a mixer (the leading underscore keeps it out of the automatic mixer imports). Written from
the equations of zoology's ``ImplicitLongConvolution``. Position ``j < l_max`` has the row::

    z_j = [ j / (l_max - 1),  cos(2 pi f_b j / l_max),  -sin(2 pi f_b j / l_max) ]_b

for ``bands = (emb_dim - 1) // 2`` frequencies ``f_b`` evenly spaced from ``1e-4`` to
``bands - 1`` (with the default ``emb_dim = 3`` a single, almost-zero frequency, so the table
is essentially ``[t, 1, 0]``). The table is an ``nn.Parameter`` that is not trained
(``requires_grad=False``), as in zoology: it counts among the parameters and is saved with
them but never changes. The filter is ``k = W2 relu(W1 z_j + b1) + b2`` (``W1`` ``(16, emb_dim)``,
``W2`` ``(channels, 16)``, both ``nn.Linear``) and the output::

    y = k * u + u          (causal, depthwise; the "+ u" is zoology's fft_conv skip)

For a sequence of ``L`` tokens the filter has ``min(L, l_max)`` taps, so tokens more than
``l_max - 1`` positions back are not seen. There is no recurrent form: the filter is a finite
impulse response as long as ``l_max``, so a step would need the last ``l_max - 1`` inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._conv import causal_conv

LOWEST_FREQUENCY = 1e-4


def positional_table(length: int, emb_dim: int = 3) -> torch.Tensor:
    """The ``(length, emb_dim)`` table ``z`` above (float32)."""
    if emb_dim < 3 or emb_dim % 2 == 0:
        raise ValueError(f"emb_dim must be odd and at least 3 (time, cosine, sine), got {emb_dim}")
    bands = (emb_dim - 1) // 2
    time = torch.linspace(0, 1, length)
    angle = 2 * math.pi * torch.arange(length, dtype=torch.float32) / length
    phase = angle[:, None] * torch.linspace(LOWEST_FREQUENCY, bands - 1, bands)[None, :]
    return torch.cat([time[:, None], phase.cos(), -phase.sin()], dim=-1)


class ImplicitLongConv(nn.Module):
    """``(B, L, C)`` → ``(B, L, C)``: ``k * u (+ u)`` with ``k`` from the filter MLP over ``z``."""

    def __init__(self, channels: int, l_max: int, emb_dim: int = 3, hidden: int = 16,
                 identity_skip: bool = True):
        super().__init__()
        self.channels = channels
        self.identity_skip = identity_skip
        self.z = nn.Parameter(positional_table(l_max, emb_dim), requires_grad=False)
        self.filter_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    @property
    def l_max(self) -> int:
        return self.z.shape[0]

    def filter(self, length: int) -> torch.Tensor:
        """The first ``min(length, l_max)`` taps, ``(C, taps)``; tap ``j`` weighs the input ``j`` back."""
        return self.filter_mlp(self.z[:length]).transpose(0, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        channels_first = u.transpose(1, 2)  # (B, C, L)
        y = causal_conv(channels_first, self.filter(u.shape[1])).transpose(1, 2)
        return y + u if self.identity_skip else y
