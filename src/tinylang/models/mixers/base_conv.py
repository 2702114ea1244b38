"""BaseConv: a gated convolution (Arora et al. 2023, "Zoology"), as zoology's code builds it.

Written from zoology's ``BaseConv``. For the input ``u`` ``(L, d)`` of layer ``i``::

    y = (u W + b) ⊙ conv_i(u) + u

``conv_i`` is chosen per layer by ``kernel_size`` (an int for every layer, or a list indexed by
the layer: ``kernel_size[i]``; a layer beyond the list is an error, as in zoology):

* ``k >= 1``: a short causal depthwise ``nn.Conv1d`` of ``k`` taps with a bias
  (``_shortconv.ShortConv``; causal-conv1d on a GPU when installed).
* ``-1``: a long convolution as long as ``l_max``, with its own ``+ u`` skip, ``h * u + u``:
  ``long_conv="implicit"`` (default) zoology's implicit filter (``_implicit_conv``: an MLP over a
  frozen positional table ``z``), ``"explicit"`` a learned ``(d, l_max)`` filter table with a
  ``1/sqrt(1+t)`` envelope and a per-channel bias (our earlier BaseConv's filter, not zoology's
  explicit ``LongConvolution``, which draws the table from N(0, 1) and has no bias).

The default ``kernel_size = [3, -1, 3, -1]`` is the paper's: short filters in layers 0 and 2,
implicit long ones in 1 and 3. Like zoology there is no output projection (the MLP after the
mixer mixes channels). Other options:

* ``use_act``: zoology's option, SiLU on both factors, ``silu(u W + b) ⊙ silu(conv(u))``.
* ``bias`` (default true, as zoology builds it: the paper's wiring passes ``bias=False``, but
  zoology's BaseConv ignores it): the biases of the projection, the short filter and our options.
* ``out_proj`` (ours, default false): a final ``nn.Linear`` on the gated product,
  ``y = out_proj((u W + b) ⊙ conv(u)) + u``.
* ``identity_skips`` (default true): both ``+ u`` of zoology; false drops them (our earlier
  BaseConv: ``out_proj((u W + b) ⊙ (h * u + b_h))`` with ``long_conv="explicit"``, ``out_proj``).

Recurrent form (``initial_state``/``step``/``forward_with_state``, the short filter's last
``k - 1`` inputs): on short-filter layers only. A long-filter layer has none (its filter is as
long as ``l_max``); there ``has_recurrence`` is false and the state methods raise
``RecurrenceUnavailable``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from . import MIXERS
from ._conv import causal_conv
from ._implicit_conv import ImplicitLongConv
from ._shortconv import ShortConv
from .base import RecurrentMixer
from .options import LONG, BaseConvOptions, layer_kernel_size

# (conv_state (B, d_model, kernel_size - 1),)
BaseConvState = tuple[torch.Tensor]


class ExplicitLongConv(nn.Module):
    """A learned causal filter per channel, ``(C, l_max)``, plus a per-channel bias; ``(B, L, C)`` in/out.

    Initialised as Gaussian noise with a ``1/sqrt(1+t)`` envelope, so that the output variance
    grows only logarithmically with the length. Sequences longer than ``l_max`` see a filter that
    is zero beyond it.
    """

    def __init__(self, channels: int, l_max: int, bias: bool = True, identity_skip: bool = True):
        super().__init__()
        envelope = (1.0 + torch.arange(l_max, dtype=torch.float32)).rsqrt()
        self.filter = nn.Parameter(torch.randn(channels, l_max) * envelope / math.sqrt(2.0))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.identity_skip = identity_skip

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y = causal_conv(u.transpose(1, 2), self.filter).transpose(1, 2)
        if self.bias is not None:
            y = y + self.bias
        return y + u if self.identity_skip else y


@MIXERS.register("base_conv")
class BaseConv(RecurrentMixer):
    """``(u W + b) ⊙ conv(u) + u`` with a short or a long causal filter, chosen per layer."""

    Options = BaseConvOptions
    rescaled_projections = ()  # zoology's BaseConv has no out_proj/fc2 (ours is not rescaled)

    def __init__(self, d_model: int, options: BaseConvOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.kernel_size = layer_kernel_size(options.kernel_size, layer_idx)
        self.identity_skips = options.identity_skips
        self.projection = nn.Linear(d_model, d_model, bias=options.bias)
        self.conv = self._make_conv(d_model, options)
        self.use_act = options.use_act
        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias) if options.out_proj else None

    def _make_conv(self, d_model: int, options: BaseConvOptions) -> nn.Module:
        if self.kernel_size != LONG:
            return ShortConv(d_model, self.kernel_size, bias=options.bias)  # nn.Conv1d's own init
        if options.long_conv == "implicit":
            return ImplicitLongConv(d_model, options.l_max, identity_skip=options.identity_skips)
        return ExplicitLongConv(d_model, options.l_max, bias=options.bias, identity_skip=options.identity_skips)

    @property
    def is_short(self) -> bool:
        return self.kernel_size != LONG

    def _gate(self, u: torch.Tensor, u_conv: torch.Tensor) -> torch.Tensor:
        u_proj = self.projection(u)
        y = F.silu(u_proj) * F.silu(u_conv) if self.use_act else u_proj * u_conv
        if self.out_proj is not None:
            y = self.out_proj(y)
        return y + u if self.identity_skips else y

    def mix(self, x: torch.Tensor, state: BaseConvState | None, need_state: bool):
        if not self.is_short:
            return self._gate(x, self.conv(x)), None
        conv_state = None if state is None else state[0]
        kernels.log_path_once(self, "base_conv short conv", self.conv.fused_kernel(x, conv_state) is not None)
        u_conv, conv_state = self.conv(x, conv_state)
        return self._gate(x, u_conv), (conv_state,)

    # -- recurrent form (short-filter layers only) ------------------------------------------

    def recurrence_missing(self) -> str | None:
        return None if self.is_short else "a long filter (as long as l_max) carries no fixed-size state"

    def initial_state(self, batch_size: int, device=None, dtype=None) -> BaseConvState:
        self.require_recurrence()
        return (self.conv.initial_state(batch_size, device, dtype),)

    def step(self, x_t: torch.Tensor, state: BaseConvState):
        self.require_recurrence()
        u_conv, conv_state = self.conv.step(x_t, state[0])
        return self._gate(x_t, u_conv), (conv_state,)
