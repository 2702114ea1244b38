"""BaseConv: a gated convolution (Arora et al. 2023, "Zoology", Section 5 / Appendix).

Written from the paper's definition. For input ``u`` ``(L, d)``::

    y = (u W + b1) ⊙ (h * u + b2)
    out = y W_out + b_out

``h * u`` is a causal depthwise convolution, one filter per channel: either a long explicit
filter (``long_conv=True``: a learned ``(d, l_max)`` table, applied by FFT; sequences
longer than ``l_max`` see a filter that is zero beyond ``l_max``) or a short one of
``kernel_size`` taps (``long_conv=False``: ``_shortconv.ShortConv``, causal-conv1d on a GPU
when installed). The paper's BaseConv has no output projection
(the following MLP mixes channels); this one ends in ``out_proj`` so that every mixer in
the package writes to the residual stream through a linear map of the same name.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from .. import kernels
from . import MIXERS
from ._conv import causal_conv
from ._shortconv import ShortConv
from .base import Mixer, MixerOptions


class BaseConvOptions(MixerOptions):
    kernel_size: int = Field(3, ge=1)  # taps of the short filter (used when long_conv is False)
    long_conv: bool = True
    l_max: int = Field(2048, ge=1)  # length of the explicit long filter
    bias: bool = True


class LongConv(nn.Module):
    """Explicit long causal filter per channel, ``(d, l_max)``, applied by ``causal_conv``.

    Initialised as Gaussian noise with a ``1/sqrt(1+t)`` envelope, so that the output
    variance grows only logarithmically with the length; plus a per-channel output bias.
    """

    def __init__(self, channels: int, l_max: int, bias: bool = True):
        super().__init__()
        envelope = (1.0 + torch.arange(l_max, dtype=torch.float32)).rsqrt()
        self.filter = nn.Parameter(torch.randn(channels, l_max) * envelope / math.sqrt(2.0))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y = causal_conv(u, self.filter)
        return y if self.bias is None else y + self.bias.unsqueeze(-1)


@MIXERS.register("base_conv")
class BaseConv(Mixer):
    """``out_proj((in_proj(u)) ⊙ conv(u))`` with a long (FFT) or short causal filter."""

    Options = BaseConvOptions
    default_state_mixer = "mlp"

    def __init__(self, d_model: int, options: BaseConvOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.in_proj = nn.Linear(d_model, d_model, bias=options.bias)
        self.long_conv = options.long_conv
        if self.long_conv:
            self.conv: nn.Module = LongConv(d_model, options.l_max, bias=options.bias)
        else:
            self.conv = ShortConv(d_model, options.kernel_size, bias=options.bias, init="zero_bias")
        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.long_conv:
            u_conv = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L, d)
        else:
            kernels.log_path_once(self, "base_conv short conv", self.conv.fused_kernel(x) is not None)
            u_conv = self.conv(x)[0]
        return self.out_proj(self.in_proj(x) * u_conv)
