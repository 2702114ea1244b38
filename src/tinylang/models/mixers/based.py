"""Based: Taylor-feature linear attention with a gated short convolution (Arora et al. 2024).

Written from "Simple linear attention language models balance the recall-throughput
tradeoff". Per head, queries and keys are projected to ``feature_dim`` (``f``) dimensions and
mapped through the 2nd-order Taylor feature map of ``exp``::

    phi(x) = [1, x', vec(x' (outer) x') / sqrt(2)],   x' = x / f**(1/4)

so that ``phi(q) . phi(k) = 1 + s + s**2 / 2`` with ``s = q . k / sqrt(f)`` (the Taylor
expansion of the softmax kernel ``exp(s)``; always >= 1/2). ``phi`` has ``1 + f + f**2``
entries. Causal linear attention, for each head::

    y_t = phi(q_t)^T S_t / (phi(q_t) . z_t + eps),   S_t = sum_{i<=t} phi(k_i) v_i^T,
                                                     z_t = sum_{i<=t} phi(k_i)

Parallel form: chunked. Inside a chunk of ``chunk_size`` positions the kernel
``1 + s + s**2/2`` is evaluated directly on the ``q . k`` scores (a masked quadratic form, no
expanded features); across chunks the expanded-feature states ``S``, ``z`` of earlier chunks
are added (exclusive cumulative sums over chunks). For sequences no longer than one chunk
no expanded features are built at all. Recurrent form (``step``): the running ``S`` and
``z``.

The paper's Based model is a hybrid: besides the linear attention it stacks short gated
convolution layers (BaseConv, ``y = (W x + b) * (h conv x)`` with a short causal filter
``h``) and a small sliding-window attention. With ``short_conv=True`` (default) this mixer
applies a BaseConv with a depthwise causal filter of ``kernel_size`` (default 3) *before* the
linear attention, residually: ``x <- x + (W x + b) * conv(x)``, then linear attention on the
result; it gives the attention's keys and values the neighbouring tokens (what the paper
uses the short convolutions for). The sliding-window attention is not included.

Fast path: on a GPU with causal-conv1d installed the short convolution runs fused
(``_shortconv.ShortConv``); the linear attention is always the pure-PyTorch form above.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from .. import kernels
from . import MIXERS
from ._shortconv import ShortConv
from .base import Mixer, MixerOptions

# (conv_state (B, d_model, kernel_size-1 or 0), S (B, H, F, head_dim), z (B, H, F)), F = 1 + f + f^2
BasedState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class BasedOptions(MixerOptions):
    feature_dim: int = Field(16, ge=1)
    n_heads: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"  # auto: max(1, d_model // 16)
    eps: float = Field(1e-6, ge=0)
    bias: bool = False
    short_conv: bool = True
    kernel_size: int = Field(3, ge=1)
    chunk_size: int = Field(64, ge=1)


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
    n_chunks = max(1, -(-length // chunk_size))
    size = min(chunk_size, length) if n_chunks == 1 else chunk_size
    pad = n_chunks * size - length
    if pad:
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    qc = q.unflatten(2, (n_chunks, size))  # (B, H, n, C, f)
    kc = k.unflatten(2, (n_chunks, size))
    vc = v.unflatten(2, (n_chunks, size))

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


@MIXERS.register("based")
class Based(Mixer):
    """Taylor linear attention (plus an optional BaseConv short gated convolution before it)."""

    Options = BasedOptions
    default_state_mixer = "mlp"

    def __init__(self, d_model: int, options: BasedOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.n_heads = max(1, d_model // 16) if options.n_heads == "auto" else options.n_heads
        if d_model % self.n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({self.n_heads})")
        self.feature_dim = options.feature_dim
        self.head_dim = d_model // self.n_heads
        self.expanded_dim = 1 + self.feature_dim + self.feature_dim**2
        self.eps = options.eps
        self.chunk_size = options.chunk_size

        self.use_short_conv = options.short_conv
        if self.use_short_conv:
            self.conv_proj = nn.Linear(d_model, d_model, bias=True)  # BaseConv's (W x + b)
            self.conv = ShortConv(d_model, options.kernel_size, bias=True)
        qk_dim = self.n_heads * self.feature_dim
        self.q_proj = nn.Linear(d_model, qk_dim, bias=options.bias)
        self.k_proj = nn.Linear(d_model, qk_dim, bias=options.bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=options.bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias)

    # -- shared pieces -------------------------------------------------------------------

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., H * e)`` → ``(..., H, e)``."""
        return t.unflatten(-1, (self.n_heads, -1))

    def _qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = self.feature_dim**-0.25
        return (
            self._heads(self.q_proj(h)) * scale,
            self._heads(self.k_proj(h)) * scale,
            self._heads(self.v_proj(h)),
        )

    # -- parallel form ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self._forward(x, None, need_state=False)
        return y

    def forward_with_state(self, x: torch.Tensor, state: BasedState | None = None) -> tuple[torch.Tensor, BasedState]:
        """Like ``forward`` but starting from (and returning) a recurrent state."""
        return self._forward(x, state, need_state=True)

    def _forward(self, x: torch.Tensor, state: BasedState | None, need_state: bool):
        conv_state = None if state is None else state[0]
        if self.use_short_conv:
            kernels.log_path_once(self, "based short conv", self.conv.fused_kernel(x, conv_state) is not None)
            conv_out, conv_state = self.conv(x, conv_state)
            h = x + self.conv_proj(x) * conv_out
        else:
            h = x
            conv_state = x.new_zeros(x.shape[0], self.d_model, 0)
        q, k, v = (t.transpose(1, 2) for t in self._qkv(h))  # (B, H, L, .)
        attn_state = None if state is None else (state[1], state[2])
        y, new_attn = based_linear_attention(q, k, v, self.eps, self.chunk_size, attn_state, need_state)
        y = self.out_proj(y.transpose(1, 2).flatten(2))
        new_state = None if new_attn is None else (conv_state, *new_attn)
        return y, new_state

    # -- recurrent form --------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> BasedState:
        """Zeros: ``(conv_state (B, d_model, kernel_size-1 or 0), S (B, H, F, head_dim), z (B, H, F))``."""
        weight = self.q_proj.weight
        device = device if device is not None else weight.device
        dtype = dtype if dtype is not None else weight.dtype
        width = self.conv.state_width if self.use_short_conv else 0
        return (
            torch.zeros(batch_size, self.d_model, width, device=device, dtype=dtype),
            torch.zeros(batch_size, self.n_heads, self.expanded_dim, self.head_dim, device=device, dtype=dtype),
            torch.zeros(batch_size, self.n_heads, self.expanded_dim, device=device, dtype=dtype),
        )

    def step(self, x_t: torch.Tensor, state: BasedState) -> tuple[torch.Tensor, BasedState]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        conv_state, S, z = state
        if self.use_short_conv:
            conv_out, conv_state = self.conv.step(x_t, conv_state)
            h = x_t + self.conv_proj(x_t) * conv_out
        else:
            h = x_t
        q, k, v = self._qkv(h)  # (B, H, f), (B, H, f), (B, H, dv)
        phi_q, phi_k = taylor_features(q), taylor_features(k)  # (B, H, F)
        S = S + phi_k.unsqueeze(-1) * v.unsqueeze(-2)
        z = z + phi_k
        num = (phi_q.unsqueeze(-2) @ S).squeeze(-2)  # (B, H, dv)
        den = (phi_q * z).sum(-1, keepdim=True)
        y = num / (den + self.eps)
        return self.out_proj(y.flatten(1)), (conv_state, S, z)

