"""The Mamba selective state-space mixer (Gu & Dao 2023), in pure PyTorch.

Written from the paper's equations. Parameter names and shapes follow the
``mamba_ssm.modules.mamba_simple.Mamba`` module (``in_proj``, ``conv1d``, ``x_proj``,
``dt_proj``, ``A_log``, ``D``, ``out_proj``) so that a checkpoint trained here can be
loaded into a CUDA fast path later.

For one channel ``d`` and state index ``n`` the discretised recurrence is::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t
    y_t = C_t . h_t + D * x_t

with ``dt``, ``B``, ``C`` functions of the input (the "selection" mechanism).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .. import kernels
from . import MIXERS
from ._dt import inverse_softplus, random_log_dt
from ._shortconv import ShortConv
from .base import RecurrentMixer
from .options import MambaConv1dOptions, MambaOptions, MambaWithoutConvOptions

# (conv_state [B, d_inner, d_conv - 1], ssm_state [B, d_inner, d_state])
MambaState = tuple[torch.Tensor, torch.Tensor]


class _SelectiveScan(torch.autograd.Function):
    """The selective-scan recurrence with a hand-written backward.

    Computes ``h_t = exp(dt_t A) * h_{t-1} + dtu_t (outer) B_t`` and ``y_t = h_t . C_t``.
    Inputs are time-major: ``dt``, ``dtu`` ``(L, batch, D)``; ``A`` ``(D, N)``, or
    ``(batch, D, N)`` for one per row; ``B``, ``C`` ``(L, batch, N)``; ``h0`` ``(batch, D, N)``.
    Returns ``y`` ``(L, batch, D)``, the last state ``(batch, D, N)`` and every state (what the
    backward reads; not differentiable).

    Both directions loop over time on ``(batch, D, N)`` blocks, which stay in cache, and
    never materialise ``exp(dt A)`` or ``dt B x`` for the whole sequence; only the states are
    saved. The backward is the reverse-time scan
    ``g_t = C_t (outer) dL/dy_t + exp(dt_{t+1} A) * g_{t+1}`` (``g_t = dL/dh_t``), from which
    ``dL/d(dt_t A) = g_t * h_{t-1} * exp(dt_t A)``, ``dL/d dtu_t = g_t . B_t``,
    ``dL/dB_t = dtu_t . g_t`` and ``dL/dC_t = dL/dy_t . h_t``. Under ``torch.func.vmap``
    (models stacked along a run axis) the runs join the batch (``vmap`` below).
    """

    @staticmethod
    def forward(dt, A, dtu, B, C, h0):
        length = dt.shape[0]
        hs = dt.new_empty((length, *h0.shape))
        y = dt.new_empty(dt.shape)
        dtu_col = dtu.unsqueeze(-1)  # (L, batch, D, 1)
        B_row = B.unsqueeze(2)  # (L, batch, 1, N)
        C_col = C.unsqueeze(-1)  # (L, batch, N, 1)
        h = h0
        for t in range(length):
            dA = torch.exp(dt[t].unsqueeze(-1) * A)
            torch.mul(dA, h, out=hs[t])
            h = hs[t].baddbmm_(dtu_col[t], B_row[t])
            torch.bmm(h, C_col[t], out=y[t].unsqueeze(-1))
        return y, h, hs

    @staticmethod
    def setup_context(ctx, inputs, output):
        dt, A, dtu, B, C, h0 = inputs
        ctx.save_for_backward(dt, A, dtu, B, C, h0, output[2])
        ctx.mark_non_differentiable(output[2])
        ctx.set_materialize_grads(False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h_last, _grad_hs):
        dt, A, dtu, B, C, h0, hs = ctx.saved_tensors
        length = dt.shape[0]
        if grad_y is None:
            grad_y = torch.zeros_like(dt)
        gy_col = grad_y.unsqueeze(-1)  # (L, batch, D, 1)
        gy_row = grad_y.unsqueeze(2)  # (L, batch, 1, D)
        dtu_row = dtu.unsqueeze(2)  # (L, batch, 1, D)
        B_col = B.unsqueeze(-1)  # (L, batch, N, 1)
        C_row = C.unsqueeze(2)  # (L, batch, 1, N)
        grad_dt = torch.empty_like(dt)
        grad_dtu = torch.empty_like(dtu)
        grad_B = torch.empty_like(B)
        grad_C = torch.empty_like(C)
        acc_A = torch.zeros_like(h0)
        g = grad_h_last
        dA_next = None
        for t in range(length - 1, -1, -1):
            h_t = hs[t]
            torch.bmm(gy_row[t], h_t, out=grad_C[t].unsqueeze(1))
            if g is None:
                g = torch.bmm(gy_col[t], C_row[t])
            else:
                if dA_next is not None:
                    g = g * dA_next
                g = g.baddbmm_(gy_col[t], C_row[t])
            torch.bmm(g, B_col[t], out=grad_dtu[t].unsqueeze(-1))
            torch.bmm(dtu_row[t], g, out=grad_B[t].unsqueeze(1))
            dA = torch.exp(dt[t].unsqueeze(-1) * A)
            q = g * (hs[t - 1] if t > 0 else h0)
            q.mul_(dA)  # dL/d(dt_t A)
            acc_A.addcmul_(q, dt[t].unsqueeze(-1))
            torch.sum(q.mul_(A), dim=-1, out=grad_dt[t])
            dA_next = dA
        grad_h0 = g * dA_next if ctx.needs_input_grad[5] else None
        return grad_dt, acc_A.sum(0) if A.dim() == 2 else acc_A, grad_dtu, grad_B, grad_C, grad_h0

    @staticmethod
    def vmap(info, in_dims, dt, A, dtu, B, C, h0):
        """The scan of ``K`` stacked runs as one scan over ``K * batch`` rows, each row with its
        run's ``A``."""
        runs = info.batch_size
        dt_dim, A_dim, dtu_dim, B_dim, C_dim, h0_dim = in_dims
        dt, dtu, B, C = (_runs_into_batch(x, d, 1, runs) for x, d in ((dt, dt_dim), (dtu, dtu_dim), (B, B_dim), (C, C_dim)))
        h0 = _runs_into_batch(h0, h0_dim, 0, runs)
        batch = h0.shape[0] // runs
        if A_dim is not None:  # one (D, N) per run: repeated for each of its rows
            A = A.movedim(A_dim, 0)
            A = A.unsqueeze(1).expand(runs, batch, *A.shape[1:]).flatten(0, 1)
        y, h, hs = _SelectiveScan.apply(dt, A, dtu, B, C, h0)
        return ((y.unflatten(1, (runs, batch)), h.unflatten(0, (runs, batch)), hs.unflatten(1, (runs, batch))),
                (1, 0, 1))


def _runs_into_batch(x: torch.Tensor, run_dim: int | None, batch_dim: int, runs: int) -> torch.Tensor:
    """``x`` with its run axis (``run_dim``; None: shared by every run) merged into its batch axis,
    runs outermost."""
    x = x.unsqueeze(batch_dim).expand(*x.shape[:batch_dim], runs, *x.shape[batch_dim:]) if run_dim is None \
        else x.movedim(run_dim, batch_dim)
    return x.flatten(batch_dim, batch_dim + 1)


def selective_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The selective scan in parallel form (over a whole sequence).

    Shapes: ``x``, ``dt``: ``(batch, L, d_inner)`` (``dt`` already positive);
    ``A``: ``(d_inner, d_state)``; ``B``, ``C``: ``(batch, L, d_state)``; ``D``: ``(d_inner,)``;
    ``h0``: ``(batch, d_inner, d_state)`` or None for zeros.
    Returns ``y`` ``(batch, L, d_inner)`` and the last state ``(batch, d_inner, d_state)``.

    A sequential loop over time (``_SelectiveScan``) was measured fastest on CPU for the
    small models this package trains (B=32, L=37, d_model=64, 2 threads: ~10 ms forward +
    backward per layer, vs ~14 ms for an autograd-recorded loop and several times slower
    for a log-depth Hillis-Steele scan, whose full-size temporaries are memory-bound).
    """
    batch, _, d_inner = x.shape
    if h0 is None:
        h0 = x.new_zeros(batch, d_inner, A.shape[1])

    def time_major(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(0, 1).contiguous()

    y, h_last, _ = _scan(time_major(dt), A, time_major(dt * x), time_major(B), time_major(C), h0)
    return y.transpose(0, 1) + x * D, h_last


@torch.compiler.disable
def _scan(*inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Eager inside a compiled block (a study's `compile`): traced, the time loop would be unrolled
    # and its in-place writes into views do not survive the compiled backward.
    return _SelectiveScan.apply(*inputs)


@MIXERS.register("mamba")
class Mamba(RecurrentMixer):
    """Mamba block: gated selective SSM with an optional short causal depthwise convolution.

    The convolution ablations are options: ``conv="none"`` (no convolution, registered as
    ``mamba_without_conv``), ``d_conv=1`` (a kernel-size-1 convolution, i.e. a learned
    per-channel scale and bias with no mixing across time; its conv state is empty) and
    ``conv_impl="torch"`` (an ordinary ``nn.Conv1d``, registered as ``mamba_conv1d``).

    ``conv_act`` (a parameter-free SiLU) is applied to the (convolved) SSM input, so a hook
    on ``mixer.conv_act`` sees the short convolution's post-activation output
    ``(batch, length, d_inner)``.
    """

    Options = MambaOptions
    block_kind = "mamba"
    rescaled_projections = ("out_proj",)

    def __init__(self, d_model: int, options: MambaOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.d_state = options.d_state
        self.d_conv = options.d_conv
        self.d_inner = options.expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if options.dt_rank == "auto" else options.dt_rank
        self.use_conv = options.conv == "causal"
        self.use_fast_path = True  # fused CUDA kernels when installed and on a GPU (set False to compare)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=options.bias)
        if self.use_conv or getattr(options, "unused_conv", False):
            # conv_impl "torch": never the fused causal-conv1d kernel (see MambaConv1d)
            self.conv1d = ShortConv(self.d_inner, self.d_conv, bias=options.conv_bias,
                                    fusable=options.conv_impl == "auto")
            self.conv1d.requires_grad_(self.use_conv)
        self.conv_act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)

        # dt_proj: weight uniform in ±dt_rank^-0.5; bias = softplus^-1(dt) with dt log-uniform
        # in [dt_min, dt_max], so the initial step sizes span that range.
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(random_log_dt(self.d_inner, options.dt_min, options.dt_max)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus(dt))
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

        # S4D-real initialisation: A = -(1, 2, ..., d_state) for every channel.
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=options.bias)

    # -- shared pieces -------------------------------------------------------------------

    def _ssm_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dt, B, C)`` from the SSM input ``x`` (``(..., d_inner)``); ``dt`` is positive."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    # -- parallel form ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.use_fast_path and x.is_cuda and kernels.selective_scan_fn() is not None
        kernels.log_path_once(self, "mamba", fused)
        return self._forward_fused(x) if fused else self.mix(x, None, need_state=False)[0]

    def _ssm_input(self, u: torch.Tensor, conv_state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (convolved, activated) SSM input ``(B, L, d_inner)`` and the conv state after it."""
        if self.use_conv:
            u, conv_state = self.conv1d(u, conv_state)
        else:
            conv_state = u.new_zeros(u.shape[0], self.d_inner, 0)
        return self.conv_act(u), conv_state

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same computation through mamba-ssm's selective scan (and, through ``ShortConv``,
        causal-conv1d where allowed); the ``conv_act`` hook point still runs."""
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u, _ = self._ssm_input(u, None)  # (B, L, d_inner)
        dt, B, C = self._ssm_params(u)
        y = kernels.selective_scan_fn()(
            u.transpose(1, 2).contiguous(), dt.transpose(1, 2).contiguous(), -torch.exp(self.A_log.float()),
            B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
            z=None, delta_bias=None, delta_softplus=False,
        )
        return self.out_proj(y.transpose(1, 2) * F.silu(z))

    def mix(self, x: torch.Tensor, state: MambaState | None, need_state: bool) -> tuple[torch.Tensor, MambaState]:
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, d_inner) each
        u, conv_state = self._ssm_input(u, None if state is None else state[0])
        dt, B, C = self._ssm_params(u)
        A = -torch.exp(self.A_log)
        y, h_last = selective_scan(u, dt, A, B, C, self.D, None if state is None else state[1])
        return self.out_proj(y * F.silu(z)), (conv_state, h_last)

    # -- recurrent form --------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> MambaState:
        """Zero state: ``(conv_state (B, d_inner, d_conv-1 or 0), ssm_state (B, d_inner, d_state))``."""
        dtype = dtype if dtype is not None else self.in_proj.weight.dtype
        device = device if device is not None else self.in_proj.weight.device
        conv_state = (self.conv1d.initial_state(batch_size, device, dtype) if self.use_conv
                      else torch.zeros(batch_size, self.d_inner, 0, device=device, dtype=dtype))
        return (
            conv_state,
            torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype),
        )

    def step(self, x_t: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        conv_state, ssm_state = state
        u, z = self.in_proj(x_t).chunk(2, dim=-1)  # (B, d_inner)
        if self.use_conv:
            u, conv_state = self.conv1d.step(u, conv_state)
        u = self.conv_act(u)

        dt, B, C = self._ssm_params(u)  # (B, d_inner), (B, N), (B, N)
        A = -torch.exp(self.A_log)
        dA = torch.exp(dt.unsqueeze(-1) * A)  # (B, d_inner, N)
        ssm_state = dA * ssm_state + (dt * u).unsqueeze(-1) * B.unsqueeze(1)
        y = (ssm_state * C.unsqueeze(1)).sum(-1) + self.D * u
        y = y * F.silu(z)
        return self.out_proj(y), (conv_state, ssm_state)


@MIXERS.register("mamba_without_conv")
class MambaWithoutConv(Mamba):
    """Mamba without the short convolution (the paper's ablation); ``conv`` defaults to "none"."""

    Options = MambaWithoutConvOptions


@MIXERS.register("mamba_conv1d")
class MambaConv1d(Mamba):
    """Mamba whose short convolution is an ordinary, non-fused ``nn.Conv1d`` (the paper's
    ablation); ``conv_impl`` is fixed to "torch" and ``conv`` to "causal".

    On CUDA, mamba-ssm computes the convolution with the fused ``causal_conv1d`` kernel; this
    variant never takes that kernel, whatever the device, so any difference it shows is due
    to the implementation of the convolution alone. This package has no fused fast path yet
    and the reference already uses ``nn.Conv1d``, so for now ``mamba_conv1d`` computes exactly
    what ``mamba`` computes; the name and option exist so that configs (and results) stay
    valid once a fast path is added for ``conv_impl="auto"``. Parameter names are unchanged.
    """

    Options = MambaConv1dOptions
