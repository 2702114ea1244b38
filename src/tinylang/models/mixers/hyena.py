"""The Hyena operator (Poli et al. 2023, "Hyena Hierarchy"), in pure PyTorch.

Written from the paper's equations (Section 3, Definition 3.1 and the implicit filter of
Section 3.3). For an order-``N`` operator and input ``u`` ``(L, d)``:

    (x^1, ..., x^N, v) = ShortConv(u W_in)               # N + 1 streams of width d
    z^1 = v
    z^{n+1}_t = x^n_t ⊙ (h^n * z^n + b^n ⊙ z^n)_t        # n = 1 .. N
    y = z^{N+1} W_out

``ShortConv`` is a depthwise causal convolution with ``short_filter`` taps over all
``(N + 1) d`` channels (``_shortconv.ShortConv``: causal-conv1d on a GPU when installed).
Each long filter ``h^n`` (one per channel) is *implicit*:

    h^n_t = FFN(PE(t)) ⊙ window(t),    window_c(t) = exp(-alpha_c t / l_max)

where ``PE(t)`` is ``[t / (l_max - 1), cos(2π f_k t / l_max), -sin(2π f_k t / l_max)]``
(``emb_dim = 1 + 2 * bands``), the FFN is ``Linear → Sin → Linear → Sin → Linear → Sin →
Linear`` with sine activations of learned per-feature frequency, and the decay rates
``alpha_c`` are spread over the channels so that the fastest filters fall to 1 % by 30 % of
``l_max`` and the slowest by 150 %. The filters are generated for the actual length ``L``
(any ``L``; ``l_max`` only sets the time scale), and ``h * z`` is computed by
``causal_conv`` (FFT with zero-padding to ``2L`` for long sequences).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, field_validator
from torch import nn

from .. import kernels
from . import MIXERS
from ._conv import causal_conv
from ._shortconv import ShortConv
from .base import Mixer, MixerOptions


class HyenaOptions(MixerOptions):
    order: int = Field(2, ge=1)  # N: number of (gate, long convolution) pairs
    filter_order: int = Field(64, ge=1)  # width of the implicit filter's FFN
    short_filter: int = Field(3, ge=1)  # taps of the short depthwise convolution
    emb_dim: int = Field(3, ge=3)  # positional features: t plus (emb_dim - 1) / 2 cos/sin pairs
    l_max: int = Field(2048, ge=2)  # time scale of the positional encoding and decay window
    bias: bool = True

    @field_validator("emb_dim")
    @classmethod
    def _odd(cls, emb_dim: int) -> int:
        if emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd (t plus cos/sin pairs), got {emb_dim}")
        return emb_dim


class Sin(nn.Module):
    """``sin(w ⊙ x)`` with a learned frequency ``w`` per feature."""

    def __init__(self, dim: int, w: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Hyena's implicit long filter: ``(channels, L)`` for any requested length ``L``."""

    def __init__(self, channels: int, emb_dim: int, filter_order: int, l_max: int,
                 fast_decay: float = 0.3, slow_decay: float = 1.5, target: float = 1e-2):
        super().__init__()
        self.l_max = l_max
        bands = (emb_dim - 1) // 2
        # Band frequencies 0 .. bands-1 (the zeroth nudged off zero, as in the paper's code).
        freqs = torch.linspace(1e-4, bands - 1, bands) if bands > 1 else torch.full((1,), 1e-4)
        self.register_buffer("freqs", freqs, persistent=False)
        self.ffn = nn.Sequential(
            nn.Linear(emb_dim, filter_order), Sin(filter_order),
            nn.Linear(filter_order, filter_order), Sin(filter_order),
            nn.Linear(filter_order, filter_order), Sin(filter_order),
            nn.Linear(filter_order, channels, bias=False),
        )
        # Decay rates (per unit of t / l_max): the window falls to ``target`` at
        # fast_decay * l_max for the first channel and at slow_decay * l_max for the last.
        rates = torch.linspace(math.log(1 / target) / fast_decay, math.log(1 / target) / slow_decay, channels)
        self.register_buffer("decay_rates", rates, persistent=False)

    def positional_encoding(self, length: int, device, dtype) -> torch.Tensor:
        """``(L, emb_dim)``: ``[t/(l_max-1), cos(2π f t/l_max), -sin(2π f t/l_max)]``."""
        t = torch.arange(length, device=device, dtype=torch.float32)
        angle = 2 * math.pi * t.unsqueeze(-1) * self.freqs.to(device) / self.l_max
        pe = torch.cat([(t / (self.l_max - 1)).unsqueeze(-1), angle.cos(), -angle.sin()], dim=-1)
        return pe.to(dtype)

    def forward(self, length: int) -> torch.Tensor:
        weight = self.ffn[0].weight
        pe = self.positional_encoding(length, weight.device, weight.dtype)
        h = self.ffn(pe).transpose(0, 1)  # (channels, L)
        t = torch.arange(length, device=weight.device, dtype=weight.dtype) / (self.l_max - 1)
        window = torch.exp(-self.decay_rates.to(weight.dtype).unsqueeze(-1) * t)
        return h * window


@MIXERS.register("hyena")
class Hyena(Mixer):
    """Order-``N`` Hyena operator: gates and implicit long convolutions, alternating."""

    Options = HyenaOptions
    default_state_mixer = "mlp"

    def __init__(self, d_model: int, options: HyenaOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.order = options.order
        streams = (options.order + 1) * d_model
        self.in_proj = nn.Linear(d_model, streams, bias=options.bias)
        self.short_filter = ShortConv(streams, options.short_filter, bias=options.bias, init="zero_bias")
        self.filter = ImplicitFilter(options.order * d_model, options.emb_dim, options.filter_order, options.l_max)
        self.filter_bias = nn.Parameter(torch.randn(options.order, d_model))  # b^n: the skip term
        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, d = x.shape[1], self.d_model
        projected = self.in_proj(x)
        kernels.log_path_once(self, "hyena short conv", self.short_filter.fused_kernel(projected) is not None)
        u = self.short_filter(projected)[0].transpose(1, 2)  # (B, (N+1) d, L)
        *gates, z = u.split(d, dim=1)  # x^1 .. x^N, v
        h = self.filter(length).view(self.order, d, length)
        for n, gate in enumerate(gates):
            z = gate * (causal_conv(z, h[n]) + self.filter_bias[n].unsqueeze(-1) * z)
        return self.out_proj(z.transpose(1, 2))
