"""DeltaNet: linear attention with the delta rule (Schlag et al. 2021; Yang et al. 2024).

Written from "Parallelizing Linear Transformers with the Delta Rule over Sequence Length".
Queries, keys and values are linear projections of the input, each followed (with
``use_short_conv``) by a causal depthwise convolution of width ``d_conv`` and a SiLU
(without the convolution, the SiLU alone); queries and keys are L2-normalised per head,
and ``beta_t = sigmoid(W_beta x_t)`` is one writing strength per head. Per head, with the
state ``S`` ``(d_v, d_k)``::

    S_t = S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
    o_t = S_t q_t

then an RMSNorm of each head's output (over ``head_dim``, one gain shared by the heads) and
the output projection. (No ``1/sqrt(d_k)`` query scale: the output norm would remove it.)

Parallel forms (``algorithm``):

- ``"loop"``: the recurrence above, one token at a time (the reference);
- ``"chunk"`` (default): the chunkwise WY form. Within a chunk starting from state ``S_0``,
  ``prod_{i<=t} (I - beta_i k_i k_i^T) = I - sum_{i<=t} w_i k_i^T`` and
  ``S_t = S_0 + sum_{i<=t} (u_i - S_0 w_i) k_i^T``, where, stacking rows,
  ``W = T diag(beta) K`` and ``U = T diag(beta) V`` with ``T = (I + tril(diag(beta) K K^T, -1))^{-1}``
  (a unit lower-triangular solve). Then for the chunk
  ``O = Q S_0^T + tril(Q K^T) (U - W S_0^T)`` and ``S_next = S_0 + (U - W S_0^T)^T K``;
  a loop over chunks carries the state.

Fast path (``use_fast_path``, default on): on a GPU with flash-linear-attention installed, and
in float16/bfloat16 (its kernel rejects float32), the delta rule runs fla's ``chunk_delta_rule``
(layout ``(B, T, H, D)``, state ``(B, H, d_k, d_v)``, ``scale=1``, q and k normalised here), and
with causal-conv1d installed the short convolutions run fused (``_shortconv.ShortConv``).
Parameters are the same on both paths; each layer logs once which one it took.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from . import MIXERS
from ._chunks import chunk_layout, in_chunks
from ._shortconv import ShortConv
from .base import RecurrentMixer
from .options import DeltaNetOptions

# (q_conv, k_conv, v_conv each (B, d_model, d_conv-1 or 0), S (B, H, head_dim_v, head_dim_k))
DeltaNetState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def delta_rule_loop(q, k, v, beta, S0):
    """Reference recurrence. ``q``, ``k`` ``(B, H, L, dk)``, ``v`` ``(B, H, L, dv)``,
    ``beta`` ``(B, H, L)``, ``S0`` ``(B, H, dv, dk)``. Returns ``o`` ``(B, H, L, dv)``, ``S_L``."""
    S = S0
    outs = []
    for t in range(q.shape[2]):
        k_t, v_t, b_t = k[:, :, t], v[:, :, t], beta[:, :, t, None]
        S = S + (b_t * (v_t - (S @ k_t.unsqueeze(-1)).squeeze(-1))).unsqueeze(-1) * k_t.unsqueeze(-2)
        outs.append((S @ q[:, :, t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(outs, dim=2), S


def delta_rule_chunk(q, k, v, beta, S0, chunk_size: int):
    """Chunkwise WY form of ``delta_rule_loop`` (same arguments and results)."""
    length, dk = q.shape[2], q.shape[3]
    layout = chunk_layout(length, chunk_size)
    n_chunks, size = layout.n_chunks, layout.size
    # padding has k = 0 and beta = 0: padded steps leave the state unchanged
    qc, kc, vc = (in_chunks(t, 2, layout) for t in (q, k, v))  # (B, H, n, C, .)
    bc = in_chunks(beta, 2, layout).unsqueeze(-1)  # (B, H, n, C, 1)

    eye = torch.eye(size, dtype=q.dtype, device=q.device)
    strict = torch.ones(size, size, dtype=torch.bool, device=q.device).tril(-1)
    incl = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    lower = (bc * (kc @ kc.transpose(-1, -2))).masked_fill(~strict, 0.0)
    bk, bv = bc * kc, bc * vc
    rhs = torch.cat([bk, bv], dim=-1)
    WU = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
    W, U = WU.split([dk, vc.shape[-1]], dim=-1)
    qk = (qc @ kc.transpose(-1, -2)).masked_fill(~incl, 0.0)  # (B, H, n, C, C)

    S = S0
    outs = []
    for c in range(n_chunks):
        St = S.transpose(-1, -2)  # (B, H, dk, dv)
        U_c = U[:, :, c] - W[:, :, c] @ St  # (B, H, C, dv)
        outs.append(qc[:, :, c] @ St + qk[:, :, c] @ U_c)
        S = S + U_c.transpose(-1, -2) @ kc[:, :, c]
    o = torch.stack(outs, dim=2).flatten(2, 3)[:, :, :length]
    return o, S


@MIXERS.register("deltanet")
class DeltaNet(RecurrentMixer):
    """Delta-rule linear attention with short convolutions and an output norm."""

    Options = DeltaNetOptions

    def __init__(self, d_model: int, options: DeltaNetOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.n_heads = options.heads(d_model)
        self.head_dim = d_model // self.n_heads
        self.algorithm = options.algorithm
        self.chunk_size = options.chunk_size
        self.use_short_conv = options.use_short_conv
        self.use_fast_path = True  # fla's chunk_delta_rule when installed, on a GPU, in half precision

        self.q_proj = nn.Linear(d_model, d_model, bias=options.bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=options.bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=options.bias)
        self.b_proj = nn.Linear(d_model, self.n_heads, bias=options.bias)
        if self.use_short_conv:
            self.q_conv = ShortConv(d_model, options.d_conv, bias=options.conv_bias, activation=True)
            self.k_conv = ShortConv(d_model, options.d_conv, bias=options.conv_bias, activation=True)
            self.v_conv = ShortConv(d_model, options.d_conv, bias=options.conv_bias, activation=True)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=options.norm_eps)
        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias)

    # -- shared pieces -------------------------------------------------------------------

    def _convs(self) -> tuple[ShortConv, ShortConv, ShortConv]:
        return self.q_conv, self.k_conv, self.v_conv

    def _heads(self, q, k, v):
        """``(..., d_model)`` → ``(..., H, head_dim)``; q, k L2-normalised, v SiLU'd when no conv."""
        q, k, v = (t.unflatten(-1, (self.n_heads, self.head_dim)) for t in (q, k, v))
        if not self.use_short_conv:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        return F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6), v

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        """``(..., H, head_dim)`` → normed, merged and projected ``(..., d_model)``."""
        return self.out_proj(self.o_norm(o).flatten(-2))

    # -- parallel form ---------------------------------------------------------------------

    def _fused_delta_rule(self, v: torch.Tensor):
        """fla's ``chunk_delta_rule`` if the delta rule on values ``v`` may run it, else None."""
        if not self.use_fast_path or v.dtype not in kernels.DELTA_RULE_DTYPES:
            return None
        fn = kernels.chunk_delta_rule()
        return fn if fn is not None and kernels.fast_path_ok(v) else None

    def mix(self, x: torch.Tensor, state: DeltaNetState | None, need_state: bool):
        batch = x.shape[0]
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:
            conv_fused = self.q_conv.fused_kernel(q, None if state is None else state[0]) is not None
            kernels.log_path_once(self, "deltanet short convs", conv_fused)
            conv_states = []
            outs = []
            for i, (conv, t) in enumerate(zip(self._convs(), (q, k, v))):
                y, s = conv(t, None if state is None else state[i])
                outs.append(y)
                conv_states.append(s)
            q, k, v = outs
        else:
            conv_states = [x.new_zeros(batch, self.d_model, 0)] * 3
        q, k, v = self._heads(q, k, v)  # (B, L, H, hd)
        beta = torch.sigmoid(self.b_proj(x))  # (B, L, H)
        S0 = None if state is None else state[3]
        fused = self._fused_delta_rule(v)
        kernels.log_path_once(self, "deltanet", fused is not None)
        if fused is not None:
            # fla: (B, T, H, D) inputs, state (B, H, d_k, d_v) (ours is (B, H, d_v, d_k)); it
            # multiplies q by ``scale`` (default d_k**-0.5), which this mixer does not.
            dtype = v.dtype
            o, S = fused(
                q.to(dtype), k.to(dtype), v, beta.to(dtype), scale=1.0,
                initial_state=None if S0 is None else S0.transpose(-1, -2).contiguous(),
                output_final_state=need_state, use_qk_l2norm_in_kernel=False,
            )
            S = None if S is None else S.transpose(-1, -2).to(dtype)
            o = o.to(dtype)
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
            if S0 is None:
                S0 = x.new_zeros(batch, self.n_heads, self.head_dim, self.head_dim)
            if self.algorithm == "loop":
                o, S = delta_rule_loop(q, k, v, beta.transpose(1, 2), S0)
            else:
                o, S = delta_rule_chunk(q, k, v, beta.transpose(1, 2), S0, self.chunk_size)
            o = o.transpose(1, 2)
        y = self._output(o)
        return y, ((*conv_states, S) if need_state else None)

    # -- recurrent form --------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> DeltaNetState:
        """Zeros: three conv states ``(B, d_model, d_conv-1 or 0)`` and ``S`` ``(B, H, hd, hd)``."""
        weight = self.q_proj.weight
        device = device if device is not None else weight.device
        dtype = dtype if dtype is not None else weight.dtype
        width = self.q_conv.state_width if self.use_short_conv else 0
        conv = [torch.zeros(batch_size, self.d_model, width, device=device, dtype=dtype) for _ in range(3)]
        S = torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)
        return (*conv, S)

    def step(self, x_t: torch.Tensor, state: DeltaNetState) -> tuple[torch.Tensor, DeltaNetState]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        q, k, v = self.q_proj(x_t), self.k_proj(x_t), self.v_proj(x_t)
        conv_states = list(state[:3])
        if self.use_short_conv:
            outs = []
            for i, (conv, t) in enumerate(zip(self._convs(), (q, k, v))):
                y, conv_states[i] = conv.step(t, state[i])
                outs.append(y)
            q, k, v = outs
        q, k, v = self._heads(q, k, v)  # (B, H, hd)
        beta = torch.sigmoid(self.b_proj(x_t)).unsqueeze(-1)  # (B, H, 1)
        S = state[3]
        S = S + (beta * (v - (S @ k.unsqueeze(-1)).squeeze(-1))).unsqueeze(-1) * k.unsqueeze(-2)
        o = (S @ q.unsqueeze(-1)).squeeze(-1)
        return self._output(o), (*conv_states, S)
