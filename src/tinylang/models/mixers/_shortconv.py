"""The causal depthwise short convolution of Based, DeltaNet, Hyena and the short-filter BaseConv.

Not a mixer (the leading underscore keeps it out of the automatic mixer imports). For channel
``c`` with taps ``w_c`` of size ``K`` (``conv.weight[c, 0]``, correlation order: the last tap
weighs the current token)::

    y_t[c] = act( b[c] + sum_{j=0}^{K-1} w_c[j] * x_{t-K+1+j}[c] )

with ``x_s = 0`` for ``s < 0`` (or the stored inputs of an earlier segment). The parameters are
those of a depthwise ``nn.Conv1d`` (``conv.weight`` ``(C, 1, K)``, ``conv.bias`` ``(C,)``), the
layout mamba-ssm, causal-conv1d and flash-linear-attention use, so a fused kernel takes them as
they are. The recurrent state is the last ``K - 1`` inputs, ``(batch, channels, K - 1)``, oldest
first.

Paths: causal-conv1d's ``causal_conv1d_fn`` when it is installed, the input is on a GPU, no
state is passed in, ``use_fast_path`` is set and ``2 <= K <= 4`` (what the kernel supports);
otherwise ``F.conv1d`` on the left-padded input (on a CPU it beats a Toeplitz product at every
length measured, 8 to 200 tokens). The owning mixer logs which path ran (``fused_kernel``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels

FUSED_WIDTHS = range(2, 5)
"""Kernel sizes causal-conv1d supports."""


class ShortConv(nn.Conv1d):
    """Depthwise causal convolution on ``(batch, length, channels)`` inputs, optional SiLU after.

    A depthwise ``nn.Conv1d`` (its ``weight`` and ``bias``), so an owner's parameter names are
    those of the original it follows (Mamba's ``conv1d.weight``, BaseConv's ``conv.weight``);
    only ``forward`` differs, taking and returning the recurrent state. ``init="conv1d"`` keeps
    ``nn.Conv1d``'s initialisation (weight and bias uniform in ``±1/sqrt(K)``);
    ``init="zero_bias"`` draws the same weight distribution, newest tap first, and zeroes the
    bias (Hyena's and BaseConv's initialisation). ``fusable=False`` never takes the fused
    kernel (Mamba's ``mamba_conv1d`` ablation).
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = True, activation: bool = False,
                 init: Literal["conv1d", "zero_bias"] = "conv1d", fusable: bool = True):
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be at least 1, got {kernel_size}")
        if init not in ("conv1d", "zero_bias"):
            raise ValueError(f"unknown init {init!r}")
        skip = init == "zero_bias"  # draw nothing here: the taps below are the only draw
        super().__init__(channels, channels, kernel_size, groups=channels, bias=bias,
                         device="meta" if skip else None)
        if skip:
            self.to_empty(device="cpu")
            self._zero_bias_init()
        self.channels = channels
        self.width = kernel_size
        self.activation = activation
        self.fusable = fusable
        self.use_fast_path = True  # causal-conv1d when installed and on a GPU (set False to compare)
        self.act = nn.SiLU() if activation else nn.Identity()

    def _zero_bias_init(self) -> None:
        bound = 1 / math.sqrt(self.kernel_size[0])
        with torch.no_grad():
            taps = torch.empty(self.out_channels, self.kernel_size[0]).uniform_(-bound, bound)  # taps[:, j]: j steps back
            self.weight.copy_(taps.flip(-1).unsqueeze(1))
            if self.bias is not None:
                self.bias.zero_()

    @property
    def state_width(self) -> int:
        return self.width - 1

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(
            batch_size, self.channels, self.state_width,
            device=device if device is not None else self.weight.device,
            dtype=dtype if dtype is not None else self.weight.dtype,
        )

    def fused_kernel(self, x: torch.Tensor, state: torch.Tensor | None = None) -> Callable[..., Any] | None:
        """causal-conv1d's kernel if ``forward(x, state)`` runs it, else None."""
        if state is not None or not (self.use_fast_path and self.fusable) or self.width not in FUSED_WIDTHS:
            return None
        fn = kernels.causal_conv1d_fn()
        return fn if fn is not None and kernels.fast_path_ok(x) else None

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, L, C)`` → ``(y (B, L, C), new_state (B, C, K-1))``."""
        u = x.transpose(1, 2)  # (B, C, L)
        width = self.state_width
        fused = self.fused_kernel(x, state)
        if fused is not None:
            y = fused(u.contiguous(), self.weight.squeeze(1), self.bias,
                      activation="silu" if self.activation else None)
            tail = u[..., max(0, u.shape[-1] - width):]
            new_state = F.pad(tail, (width - tail.shape[-1], 0))
            return y.transpose(1, 2), new_state
        if state is None:
            full = F.pad(u, (width, 0))
        else:
            full = torch.cat([state.to(u.dtype), u], dim=-1)  # (B, C, K-1+L)
        y = F.conv1d(full, self.weight, self.bias, groups=self.channels)
        new_state = full[..., full.shape[-1] - width :]
        return self.act(y.transpose(1, 2)), new_state

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token ``x_t`` ``(B, C)`` → ``(y_t (B, C), new_state)``."""
        window = torch.cat([state, x_t.unsqueeze(-1)], dim=-1)  # (B, C, K)
        y = (window * self.weight.squeeze(1)).sum(-1)
        if self.bias is not None:
            y = y + self.bias
        return self.act(y), window[..., 1:]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Earlier layouts: ``conv.weight``/``conv.bias`` (a wrapped nn.Conv1d), and before that
        # Hyena's and BaseConv's filter as ``weight`` ``(C, K)``, newest tap first.
        for name in ("weight", "bias"):
            if prefix + "conv." + name in state_dict:
                state_dict[prefix + name] = state_dict.pop(prefix + "conv." + name)
        old = state_dict.get(prefix + "weight")
        if old is not None and old.dim() == 2:
            state_dict[prefix + "weight"] = old.flip(-1).unsqueeze(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
