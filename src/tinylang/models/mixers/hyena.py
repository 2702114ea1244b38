"""The Hyena operator (Poli et al. 2023, "Hyena Hierarchy") as the paper's code builds it.

The default is the layer of zoology's ``zoology.mixers.hyena.Hyena`` with the paper's settings
(``l_max = n_positions = 1024``, ``bias: false``). For input ``u`` ``(L, d)``::

    (x1, x2, v) = ShortConv(u W_in + b_in)           # 3 streams of width d
    y = (x2 ⊙ (h * (x1 ⊙ v) + b ⊙ (x1 ⊙ v))) W_out + b_out

``ShortConv`` is a depthwise causal ``nn.Conv1d`` with ``short_filter`` = 3 taps and a bias over
all ``3d`` channels (``_shortconv.ShortConv``: causal-conv1d on a GPU when installed). ``b`` is the
long convolution's per-channel skip term: ``bias: false`` (the paper's) multiplies it by zero, so
it stays a parameter that never moves. The single long filter ``h`` (one per channel) is implicit::

    h_c(t) = MLP(z_t)_c * exp(-|delta_c| t / (l_max - 1))

- ``z`` ``(l_max, emb_dim)`` is a trained table, initialised to ``[t / (l_max - 1),
  cos(2π f_k t / l_max), -sin(2π f_k t / l_max)]`` with band frequencies
  ``f = linspace(1e-4, bands - 1, bands)``, ``bands = (emb_dim - 1) / 2`` (so ``emb_dim`` = 3 has
  one band at 1e-4). The original tags ``z`` with its own learning rate, but its AdamW ignores
  such tags, so ``z`` trains at the run's learning rate; we carry no tag.
- ``MLP`` is ``Linear(emb_dim, filter_order) → Sin → Linear → Sin → Linear → Sin →
  Linear(filter_order, d, no bias)``, all ``nn.Linear`` (so the backbone's zoology init gives them
  N(0, 0.02) and a tiny filter at initialisation), with ONE ``Sin`` module, ``sin(w ⊙ x)`` with a
  learned frequency per feature initialised to 1, shared by the three activations.
- The decay rates ``|delta_c|`` (buffers) run linearly from ``ln(100) / 1.5`` on the first channel
  to ``ln(100) / 0.3`` on the last: the filters fall to 1 % by 150 % to 30 % of ``l_max``.

``h * ·`` is ``causal_conv`` (an FFT zero-padded to ``2L`` for long sequences). Sequences may
not exceed ``l_max`` (the table's length). ``out_proj`` is the residual projection the zoology
init rescales with depth.

Named variants (never the default):

- ``operator: alternating`` with ``order`` = N: our earlier order-N operator, which alternates N
  gates and N long convolutions (each with its own implicit filter and skip term)::

      z^1 = v,   z^{n+1} = x^n ⊙ (h^n * z^n + b^n ⊙ z^n),   y = z^{N+1} W_out

  (``order: 2`` is the two-convolution operator of the Hyena paper's Definition 3.1; the default
  operator is the paper's code, which pre-gates and convolves once.)
- ``positions: fixed``: the positional features are computed for the actual length instead of
  read from the trained table (no ``z`` parameter, any length allowed).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .. import kernels
from . import MIXERS
from ._conv import causal_conv
from ._shortconv import ShortConv
from .base import Mixer
from .options import HyenaOptions


class Sin(nn.Module):
    """``sin(w ⊙ x)`` with a learned frequency ``w`` per feature."""

    def __init__(self, dim: int, w: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


def positional_features(length: int, emb_dim: int, l_max: int) -> torch.Tensor:
    """``(length, emb_dim)``: ``[t/(l_max-1), cos(2π f t/l_max), -sin(2π f t/l_max)]``."""
    bands = (emb_dim - 1) // 2
    freqs = torch.linspace(1e-4, bands - 1, bands)  # the zeroth band nudged off zero
    t = torch.arange(length, dtype=torch.float32).unsqueeze(-1)
    angle = 2 * math.pi * t * freqs / l_max
    return torch.cat([t / (l_max - 1), angle.cos(), -angle.sin()], dim=-1)


class ImplicitFilter(nn.Module):
    """Hyena's implicit long filter: ``(channels, L)`` for a requested length ``L``."""

    def __init__(self, channels: int, emb_dim: int, filter_order: int, l_max: int,
                 positions: Literal["learned", "fixed"] = "learned",
                 fast_decay: float = 0.3, slow_decay: float = 1.5, target: float = 1e-2):
        super().__init__()
        self.emb_dim = emb_dim
        self.l_max = l_max
        self.learned_positions = positions == "learned"
        if self.learned_positions:
            self.z = nn.Parameter(positional_features(l_max, emb_dim, l_max))
        self.first = nn.Linear(emb_dim, filter_order)
        self.hidden = nn.ModuleList(nn.Linear(filter_order, filter_order) for _ in range(2))
        self.last = nn.Linear(filter_order, channels, bias=False)
        self.act = Sin(filter_order)  # one module: the three activations share their frequencies
        rates = torch.linspace(math.log(1 / target) / slow_decay, math.log(1 / target) / fast_decay, channels)
        self.register_buffer("decay_rates", rates, persistent=False)

    def positions(self, length: int) -> torch.Tensor:
        """``(length, emb_dim)`` MLP input: rows of the trained table, or computed features."""
        if not self.learned_positions:
            return positional_features(length, self.emb_dim, self.l_max).to(self.first.weight)
        if length > self.l_max:
            raise ValueError(f"sequence length {length} exceeds the Hyena filter's l_max {self.l_max}")
        return self.z[:length]

    def forward(self, length: int) -> torch.Tensor:
        h = self.act(self.first(self.positions(length)))
        for layer in self.hidden:
            h = self.act(layer(h))
        h = self.last(h)  # (L, channels)
        t = torch.arange(length, device=h.device, dtype=h.dtype).unsqueeze(-1) / (self.l_max - 1)
        decay = torch.exp(-t * self.decay_rates.to(h.dtype))
        return (h * decay).transpose(0, 1)


@MIXERS.register("hyena")
class Hyena(Mixer):
    """Hyena: short convolution, gates and implicit long convolutions (zoology's by default)."""

    Options = HyenaOptions
    rescaled_projections = ("out_proj",)

    def __init__(self, d_model: int, options: HyenaOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.alternating = options.operator == "alternating"
        self.n_long_convs = options.order if self.alternating else 1
        streams = (options.order + 1) * d_model
        self.in_proj = nn.Linear(d_model, streams)
        self.short_filter = ShortConv(streams, options.short_filter, init="conv1d")
        self.filter = ImplicitFilter(self.n_long_convs * d_model, options.emb_dim, options.filter_order,
                                     options.l_max, options.positions)
        self.filter_bias = nn.Parameter(torch.randn(self.n_long_convs, d_model))  # b: the skip term
        self.use_bias = options.bias
        self.out_proj = nn.Linear(d_model, d_model)

    def long_conv(self, z: torch.Tensor, h: torch.Tensor, n: int) -> torch.Tensor:
        """``h * z + b^n ⊙ z`` for ``z`` ``(B, d, L)``; without ``bias`` the skip is ``0 · b^n``
        (as in zoology: the product keeps ``b`` in the graph, with a zero gradient)."""
        skip = self.filter_bias[n] if self.use_bias else 0 * self.filter_bias[n]
        return causal_conv(z, h) + skip.unsqueeze(-1) * z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, d = x.shape[1], self.d_model
        projected = self.in_proj(x)
        kernels.log_path_once(self, "hyena short conv", self.short_filter.fused_kernel(projected) is not None)
        u = self.short_filter(projected)[0].transpose(1, 2)  # (B, (order+1) d, L)
        h = self.filter(length).view(self.n_long_convs, d, length)
        if self.alternating:
            *gates, z = u.split(d, dim=1)  # x^1 .. x^N, v
            for n, gate in enumerate(gates):
                z = gate * self.long_conv(z, h[n], n)
        else:
            x1, x2, v = u.split(d, dim=1)
            z = x2 * self.long_conv(x1 * v, h[0], 0)
        return self.out_proj(z.transpose(1, 2))
