"""Based (Arora et al. 2024, "Simple linear attention language models balance the
recall-throughput tradeoff"), as the paper's code builds it.

Written from zoology's ``Hybrid``, ``BaseConv``, ``Based`` and ``TaylorExp``. With the default
``layout="hybrid"`` layers alternate as zoology's ``Hybrid`` does (``configs[layer_idx % 2]``):

* even layers: a BaseConv (``base_conv.BaseConv``) with a short filter of ``kernel_size``
  taps (default 3): ``y = (u W + b) ⊙ conv(u) + u``. (``kernel_size=-1`` gives the implicit long
  filter instead, the paper's ``based_long_only``.)
* odd layers: Taylor linear attention (``TaylorLinearAttention``, below).

So a 1-layer Based is one BaseConv and a 2-layer Based is BaseConv then linear attention. With
``layout="every_layer"`` (ours) every layer applies the BaseConv and then the linear attention
to its output, ``y = attention(base_conv(u))`` (``short_conv=False`` drops the BaseConv).

Linear attention, per head (zoology's defaults here: 1 head, ``feature_dim`` ``f = 8``, no
biases, ``eps = 1e-12``, no rotary embedding, no dropout): queries and keys are projected to
``f`` dimensions (``proj_q``, ``proj_k``), values to ``d_model / n_heads`` (``proj_v``), and
``q``, ``k`` mapped through the 2nd-order Taylor feature map of ``exp``::

    phi(x) = [1, x / f**(1/4), vec(x (outer) x) / (sqrt(2) sqrt(f))]

so that ``phi(q) . phi(k) = 1 + s + s**2 / 2`` with ``s = q . k / sqrt(f)`` (always >= 1/2);
``phi`` has ``1 + f + f**2`` entries. Causally::

    y_t = (sum_{i<=t} phi(q_t).phi(k_i) v_i) / (sum_{i<=t} phi(q_t).phi(k_i) + eps)

then ``proj_o``. zoology computes this "quadratic" view with the full masked ``L x L`` matrix of
expanded features; here it is chunked, which is the same sum: inside a chunk of ``chunk_size``
positions the kernel ``1 + s + s**2/2`` is evaluated on the scores directly; across chunks the
expanded-feature states ``S = sum phi(k_i) v_i^T``, ``z = sum phi(k_i)`` of earlier chunks are
added. Recurrent form (``step``): the running ``S`` and ``z``.

Recurrent state of a layer: the BaseConv's ``(conv_state,)`` (its last ``kernel_size - 1``
inputs), the attention's ``(S, z)``, or both in that order (``every_layer``). A layer whose
BaseConv has the long filter has no recurrent form (``has_recurrence`` is false).

Fast path: on a GPU with causal-conv1d installed the BaseConv's short filter runs fused; the
linear attention is always the pure-PyTorch form above.
"""

from __future__ import annotations

import torch
from torch import nn

from . import MIXERS
from ._chunks import chunk_layout, in_chunks
from .base import RecurrentMixer
from .base_conv import BaseConv, BaseConvOptions
from .options import BasedOptions

# ((conv_state (B, d_model, kernel_size - 1),) if a BaseConv) + ((S (B, H, F, head_dim), z (B, H, F)) if
# an attention), F = 1 + f + f^2
BasedState = tuple[torch.Tensor, ...]
AttentionState = tuple[torch.Tensor, torch.Tensor]


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """``phi(x)`` for ``x`` ``(..., f)`` already scaled by ``f**-0.25``: ``(..., 1 + f + f**2)``."""
    outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2) * (0.5**0.5)
    return torch.cat([torch.ones_like(x[..., :1]), x, outer], dim=-1)


def taylor_kernel(scores: torch.Tensor) -> torch.Tensor:
    """``phi(q) . phi(k)`` from the scaled scores ``s = q' . k'``: ``1 + s + s**2 / 2``."""
    return 1 + scores + 0.5 * scores.square()


def based_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eps: float,
    chunk_size: int,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
    need_state: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Causal Taylor linear attention, chunked.

    ``q``, ``k`` ``(B, H, L, f)`` (already scaled by ``f**-0.25``), ``v`` ``(B, H, L, dv)``;
    ``state`` ``(S (B, H, F, dv), z (B, H, F))`` from earlier tokens or None.
    Returns ``y`` ``(B, H, L, dv)`` and, when ``need_state``, the state after the last token.
    """
    length = q.shape[2]
    layout = chunk_layout(length, chunk_size)
    n_chunks, size, pad = layout
    qc, kc, vc = (in_chunks(t, 2, layout) for t in (q, k, v))  # (B, H, n, C, .)

    causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    A = taylor_kernel(qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)  # (B, H, n, C, C)
    num = A @ vc
    den = A.sum(-1)

    new_state = None
    if n_chunks > 1 or state is not None or need_state:
        phi_k = taylor_features(kc)  # (B, H, n, C, F)
        if pad:  # padded positions must not enter the states
            valid = torch.arange(n_chunks * size, device=q.device) < length
            phi_k = phi_k * valid.view(n_chunks, size, 1).to(phi_k.dtype)
        chunk_S = phi_k.transpose(-1, -2) @ vc  # (B, H, n, F, dv)
        chunk_z = phi_k.sum(-2)  # (B, H, n, F)
        prefix_S = chunk_S.cumsum(2) - chunk_S  # states before each chunk
        prefix_z = chunk_z.cumsum(2) - chunk_z
        if state is not None:
            prefix_S = prefix_S + state[0].unsqueeze(2)
            prefix_z = prefix_z + state[1].unsqueeze(2)
        phi_q = taylor_features(qc)
        num = num + phi_q @ prefix_S
        den = den + (phi_q @ prefix_z.unsqueeze(-1)).squeeze(-1)
        if need_state:
            new_state = (prefix_S[:, :, -1] + chunk_S[:, :, -1], prefix_z[:, :, -1] + chunk_z[:, :, -1])

    y = num / (den.unsqueeze(-1) + eps)
    y = y.flatten(2, 3)[:, :, :length]
    return y, new_state


class TaylorLinearAttention(nn.Module):
    """Causal Taylor linear attention (zoology's ``Based`` mixer): ``(B, L, d)`` → ``(B, L, d)``."""

    def __init__(self, d_model: int, n_heads: int, feature_dim: int, eps: float, bias: bool, chunk_size: int):
        super().__init__()
        self.d_model = d_model
        self.n_heads = n_heads
        self.feature_dim = feature_dim
        self.head_dim = d_model // n_heads
        self.expanded_dim = 1 + feature_dim + feature_dim**2
        self.eps = eps
        self.chunk_size = chunk_size
        self.proj_q = nn.Linear(d_model, n_heads * feature_dim, bias=bias)
        self.proj_k = nn.Linear(d_model, n_heads * feature_dim, bias=bias)
        self.proj_v = nn.Linear(d_model, d_model, bias=bias)
        self.proj_o = nn.Linear(d_model, d_model, bias=bias)

    def _qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head ``q``, ``k`` (scaled by ``f**-0.25``) and ``v``: ``(..., H, .)``."""
        scale = self.feature_dim**-0.25
        q, k, v = self.proj_q(h), self.proj_k(h), self.proj_v(h)
        return (q.unflatten(-1, (self.n_heads, -1)) * scale, k.unflatten(-1, (self.n_heads, -1)) * scale,
                v.unflatten(-1, (self.n_heads, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, None, need_state=False)[0]

    def mix(self, x: torch.Tensor, state: AttentionState | None,
            need_state: bool) -> tuple[torch.Tensor, AttentionState | None]:
        """As ``RecurrentMixer.mix``."""
        q, k, v = (t.transpose(1, 2) for t in self._qkv(x))  # (B, H, L, .)
        y, new_state = based_linear_attention(q, k, v, self.eps, self.chunk_size, state, need_state)
        return self.proj_o(y.transpose(1, 2).flatten(2)), new_state

    def initial_state(self, batch_size: int, device=None, dtype=None) -> AttentionState:
        """Zeros: ``(S (B, H, F, head_dim), z (B, H, F))``."""
        weight = self.proj_q.weight
        device = device if device is not None else weight.device
        dtype = dtype if dtype is not None else weight.dtype
        return (
            torch.zeros(batch_size, self.n_heads, self.expanded_dim, self.head_dim, device=device, dtype=dtype),
            torch.zeros(batch_size, self.n_heads, self.expanded_dim, device=device, dtype=dtype),
        )

    def step(self, x_t: torch.Tensor, state: AttentionState) -> tuple[torch.Tensor, AttentionState]:
        """One token: ``x_t`` ``(B, d)`` → ``(y_t (B, d), new_state)``."""
        S, z = state
        q, k, v = self._qkv(x_t)  # (B, H, f), (B, H, f), (B, H, dv)
        phi_q, phi_k = taylor_features(q), taylor_features(k)  # (B, H, F)
        S = S + phi_k.unsqueeze(-1) * v.unsqueeze(-2)
        z = z + phi_k
        num = (phi_q.unsqueeze(-2) @ S).squeeze(-2)  # (B, H, dv)
        den = (phi_q * z).sum(-1, keepdim=True)
        return self.proj_o((num / (den + self.eps)).flatten(1)), (S, z)


@MIXERS.register("based")
class Based(RecurrentMixer):
    """A BaseConv or a Taylor linear attention per layer (``hybrid``), or both (``every_layer``)."""

    Options = BasedOptions
    rescaled_projections = ()  # zoology's Based and BaseConv have no out_proj/fc2

    def __init__(self, d_model: int, options: BasedOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        n_heads = options.heads(d_model)
        hybrid = options.layout == "hybrid"
        has_conv = layer_idx % 2 == 0 if hybrid else options.short_conv
        has_attention = layer_idx % 2 == 1 if hybrid else True
        self.base_conv = BaseConv(
            d_model, BaseConvOptions(kernel_size=options.kernel_size, l_max=options.l_max), layer_idx,
        ) if has_conv else None
        self.attention = TaylorLinearAttention(
            d_model, n_heads, options.feature_dim, options.eps, options.bias, options.chunk_size,
        ) if has_attention else None

    # -- the parts in turn, their states concatenated ----------------------------------------

    def recurrence_missing(self) -> str | None:
        if self.base_conv is not None:
            return self.base_conv.recurrence_missing()
        return None

    def _split(self, state: BasedState | None) -> tuple[tuple | None, tuple | None]:
        if state is None:
            return None, None
        n_conv = 0 if self.base_conv is None else 1
        return state[:n_conv], state[n_conv:]

    def _parts(self) -> list[nn.Module]:
        return [part for part in (self.base_conv, self.attention) if part is not None]

    def mix(self, x: torch.Tensor, state: BasedState | None, need_state: bool):
        new_state: BasedState = ()
        for part, part_state in zip((self.base_conv, self.attention), self._split(state)):
            if part is not None:
                x, part_state = part.mix(x, part_state, need_state)
                new_state += tuple(part_state or ())
        return x, new_state

    def initial_state(self, batch_size: int, device=None, dtype=None) -> BasedState:
        self.require_recurrence()
        state: BasedState = ()
        for part in self._parts():
            state += tuple(part.initial_state(batch_size, device, dtype))
        return state

    def step(self, x_t: torch.Tensor, state: BasedState):
        self.require_recurrence()
        new_state: BasedState = ()
        for part, part_state in zip((self.base_conv, self.attention), self._split(state)):
            if part is not None:
                x_t, part_state = part.step(x_t, part_state)
                new_state += tuple(part_state)
        return x_t, new_state
