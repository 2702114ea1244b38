"""The Mamba-2 mixer (Dao & Gu 2024, "Transformers are SSMs"): state-space duality (SSD).

Written in pure PyTorch from the paper's equations. Parameter names and shapes follow
``mamba_ssm.modules.mamba2.Mamba2`` (``in_proj``, ``conv1d``, ``dt_bias``, ``A_log``, ``D``,
``norm.weight``, ``out_proj``) so that a checkpoint trained here can later be loaded into a
CUDA fast path. Only the ``d_ssm == d_inner`` case is built (no extra gated-MLP channels).

Per head ``h`` (``headdim`` channels ``p``, state size ``N``) with a *scalar* decay
``A_h < 0`` (the SSM matrix is ``A_h * I``) the discretised recurrence is::

    H_t = exp(dt_t A_h) * H_{t-1} + (dt_t x_t) (outer) B_t      H_t: (headdim, N)
    y_t = H_t C_t + D_h * x_t

where ``dt_t = softplus(dt_raw_t + dt_bias_h)`` and ``x``, ``B``, ``C`` come from one input
projection followed by a short causal depthwise convolution and SiLU; ``B`` and ``C`` are
shared by the heads of a group (``ngroups``). The output is ``out_proj(norm(y, z))`` with a
gated RMSNorm, ``rmsnorm(y * silu(z)) * weight``.

The parallel form is the chunked SSD algorithm: the sequence is cut into chunks of
``chunk_size``; inside a chunk the output is the quadratic ("attention-like") form
``Y = (L o C B^T) (dt X)`` with the 1-semiseparable mask ``L[i, j] = exp(sum_{j<k<=i} dt_k A)``;
between chunks only the ``(headdim, N)`` states are passed, by the same recurrence at
chunk granularity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import MIXERS
from ._chunks import chunk_layout, in_chunks
from ._dt import inverse_softplus, random_log_dt
from ._shortconv import ShortConv
from .base import RecurrentMixer
from .options import Mamba2Options

# (conv_state [B, conv_dim, d_conv - 1], ssm_state [B, nheads, headdim, d_state])
Mamba2State = tuple[torch.Tensor, torch.Tensor]


def segsum(a: torch.Tensor) -> torch.Tensor:
    """``S[..., i, j] = sum_{j < k <= i} a[..., k]`` for ``i >= j`` and ``-inf`` above the diagonal.

    ``exp(segsum(dt * A))`` is the 1-semiseparable decay matrix ``L``. Built as a masked
    cumulative sum (not as ``cumsum[i] - cumsum[j]``) so no large partial sums cancel.
    """
    length = a.shape[-1]
    strictly_lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    # terms[..., k, j] = a[k] where k > j: cumulated over k it gives the sums for rows i.
    terms = a.unsqueeze(-1).expand(*a.shape, length).masked_fill(~strictly_lower, 0)
    sums = terms.cumsum(dim=-2)
    lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~lower, float("-inf"))


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSD scan in chunked parallel form (without the ``D`` skip).

    Shapes: ``x`` ``(batch, L, nheads, headdim)``; ``dt`` ``(batch, L, nheads)`` (positive);
    ``A`` ``(nheads,)`` (negative); ``B``, ``C`` ``(batch, L, nheads, N)`` (already
    broadcast from groups to heads); ``h0`` ``(batch, nheads, headdim, N)`` or None.
    Returns ``y`` ``(batch, L, nheads, headdim)`` and the final state.
    """
    batch, length, nheads, headdim = x.shape
    d_state = B.shape[-1]
    layout = chunk_layout(length, chunk_size)
    n_chunks, q = layout.n_chunks, layout.size
    # dt = 0 on padding: decay exp(0) = 1 and no input, so the final state is unchanged.
    x, dt, B, C = (in_chunks(t, 1, layout) for t in (x, dt, B, C))

    x_dt = x * dt.unsqueeze(-1)  # (b, c, q, h, p)
    a = (dt * A).permute(0, 3, 1, 2)  # (b, h, c, q) log-decays
    a_cum = a.cumsum(dim=-1)

    # 1. Inside each chunk: y_i = sum_{j<=i} (C_i . B_j) L[i, j] dt_j x_j.
    decay = torch.exp(segsum(a))  # (b, h, c, i, j)
    scores = torch.einsum("bcihn,bcjhn->bhcij", C, B) * decay
    y = torch.einsum("bhcij,bcjhp->bcihp", scores, x_dt)

    # 2. Each chunk's contribution to the state at its end (starting from zero).
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, j)
    chunk_states = torch.einsum("bcjhn,bhcj,bcjhp->bchpn", B, to_end, x_dt)

    # 3. Pass states between chunks: S_c = exp(sum of chunk c's a) S_{c-1} + chunk_states_c,
    #    as one matrix product with the chunk-level decay matrix.
    if h0 is None:
        h0 = x.new_zeros(batch, nheads, headdim, d_state)
    states = torch.cat([h0.unsqueeze(1), chunk_states], dim=1)  # (b, c+1, h, p, n)
    chunk_decay = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
    entering, final = states[:, :-1], states[:, -1]

    # 4. The state entering each chunk, read out at every position of it.
    from_start = torch.exp(a_cum)  # (b, h, c, i)
    y = y + torch.einsum("bcihn,bchpn,bhci->bcihp", C, entering, from_start)

    y = y.reshape(batch, n_chunks * q, nheads, headdim)[:, :length]
    return y, final


def ssd_sequential(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same map as ``ssd_chunked`` as a plain loop over time (a reference)."""
    batch, length, nheads, headdim = x.shape
    h = x.new_zeros(batch, nheads, headdim, B.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(length):
        h = _recurrence_step(h, x[:, t], dt[:, t], A, B[:, t], C[:, t])
        ys.append((h * C[:, t].unsqueeze(2)).sum(-1))
    return torch.stack(ys, dim=1), h


def _recurrence_step(h, x_t, dt_t, A, B_t, C_t) -> torch.Tensor:
    """``h (b, h, p, n)``, ``x_t (b, h, p)``, ``dt_t (b, h)``, ``B_t``/``C_t`` ``(b, h, n)``."""
    dA = torch.exp(dt_t * A)[..., None, None]
    return dA * h + (dt_t.unsqueeze(-1) * x_t).unsqueeze(-1) * B_t.unsqueeze(2)


class RMSNormGated(nn.Module):
    """``rmsnorm(x * silu(z)) * weight``, normalised over groups of ``group_size`` channels
    (mamba-ssm's ``RMSNormGated`` with ``norm_before_gate=False``)."""

    def __init__(self, d: int, eps: float = 1e-5, group_size: int | None = None):
        super().__init__()
        self.eps = eps
        self.group_size = group_size or d
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is not None:
            x = x * F.silu(z)
        grouped = x.unflatten(-1, (-1, self.group_size))
        grouped = grouped * torch.rsqrt(grouped.square().mean(-1, keepdim=True) + self.eps)
        return grouped.flatten(-2) * self.weight


@MIXERS.register("mamba2")
class Mamba2(RecurrentMixer):
    """Mamba-2 block: SSD (scalar-times-identity ``A`` per head) with a short causal convolution
    over ``(x, B, C)``, a gated RMSNorm and an output projection.

    ``conv_act`` (a parameter-free SiLU) is applied to the convolved ``(x, B, C)``, so a hook on
    ``mixer.conv_act`` sees the short convolution's post-activation output
    ``(batch, length, d_inner + 2 * ngroups * d_state)``.
    """

    Options = Mamba2Options
    block_kind = "mamba"
    rescaled_projections = ("out_proj",)

    def __init__(self, d_model: int, options: Mamba2Options, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.d_state = options.d_state
        self.d_conv = options.d_conv
        self.d_inner = options.expand * d_model
        self.headdim = options.headdim
        self.ngroups = options.ngroups
        self.chunk_size = options.chunk_size
        self.nheads = self.d_inner // self.headdim
        self.conv_dim = self.d_inner + 2 * self.ngroups * self.d_state

        # in_proj → [z (d_inner), x (d_inner), B (ngroups*d_state), C (ngroups*d_state), dt (nheads)]
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads,
                                 bias=options.bias)
        self.conv1d = ShortConv(self.conv_dim, self.d_conv, bias=options.conv_bias)
        self.conv_act = nn.SiLU()

        # dt_bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max] (floored).
        dt = torch.exp(random_log_dt(self.nheads, options.dt_min, options.dt_max)).clamp(min=options.dt_init_floor)
        self.dt_bias = nn.Parameter(inverse_softplus(dt))
        self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]

        # A_h = -exp(A_log_h), with -A_h uniform in [A_init_min, A_init_max].
        A = torch.empty(self.nheads).uniform_(options.A_init_min, options.A_init_max)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

        self.norm = RMSNormGated(self.d_inner, eps=options.norm_eps, group_size=self.d_inner // self.ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=options.bias)

    # -- shared pieces -------------------------------------------------------------------

    def _split_in_proj(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return zxbcdt.split([self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def _ssm_inputs(self, xbc: torch.Tensor, dt_raw: torch.Tensor):
        """``(x, dt, B, C)`` per head from the activated conv output ``(..., conv_dim)``."""
        gn = self.ngroups * self.d_state
        x, B, C = xbc.split([self.d_inner, gn, gn], dim=-1)
        x = x.unflatten(-1, (self.nheads, self.headdim))
        heads_per_group = self.nheads // self.ngroups
        B = B.unflatten(-1, (self.ngroups, self.d_state)).repeat_interleave(heads_per_group, dim=-2)
        C = C.unflatten(-1, (self.ngroups, self.d_state)).repeat_interleave(heads_per_group, dim=-2)
        dt = F.softplus(dt_raw + self.dt_bias)
        return x, dt, B, C

    def _output(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y + x * self.D.unsqueeze(-1)  # (..., nheads, headdim)
        return self.out_proj(self.norm(y.flatten(-2), z))

    # -- parallel form ---------------------------------------------------------------------

    def mix(self, u: torch.Tensor, state: Mamba2State | None, need_state: bool) -> tuple[torch.Tensor, Mamba2State]:
        z, xbc, dt_raw = self._split_in_proj(self.in_proj(u))
        xbc, new_conv_state = self.conv1d(xbc, None if state is None else state[0])
        xbc = self.conv_act(xbc)  # (B, L, conv_dim)

        x, dt, B, C = self._ssm_inputs(xbc, dt_raw)
        A = -torch.exp(self.A_log)
        h0 = None if state is None else state[1]
        y, h_last = ssd_chunked(x, dt, A, B, C, self.chunk_size, h0)
        return self._output(y, x, z), (new_conv_state, h_last)

    # -- recurrent form --------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> Mamba2State:
        """Zero state: ``(conv_state (B, conv_dim, d_conv-1), ssm_state (B, nheads, headdim, d_state))``."""
        dtype = dtype if dtype is not None else self.in_proj.weight.dtype
        device = device if device is not None else self.in_proj.weight.device
        return (
            self.conv1d.initial_state(batch_size, device, dtype),
            torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device, dtype=dtype),
        )

    def step(self, u_t: torch.Tensor, state: Mamba2State) -> tuple[torch.Tensor, Mamba2State]:
        """One token: ``u_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        conv_state, ssm_state = state
        z, xbc, dt_raw = self._split_in_proj(self.in_proj(u_t))
        xbc, conv_state = self.conv1d.step(xbc, conv_state)
        xbc = self.conv_act(xbc)

        x, dt, B, C = self._ssm_inputs(xbc, dt_raw)  # (B, h, p), (B, h), (B, h, n), (B, h, n)
        A = -torch.exp(self.A_log)
        ssm_state = _recurrence_step(ssm_state, x, dt, A, B, C)
        y = (ssm_state * C.unsqueeze(2)).sum(-1)
        return self._output(y, x, z), (conv_state, ssm_state)
