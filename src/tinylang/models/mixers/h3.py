"""H3, the Hungry Hungry Hippos layer (Fu et al. 2023), in pure PyTorch.

Written from the paper's equations (Section 3.1 and Algorithm 1). For input ``u`` ``(L, d)``
split into ``H = d / head_dim`` heads of ``head_dim`` channels::

    Q = u W_Q,  K = u W_K,  V = u W_V
    K̄ = SSM_shift(K)                                  # per channel
    S_t^h = SSM_diag^h( K̄^h ⊗ V^h )_t                 # (head_dim x head_dim) per head
    O_t^h = (Q_t^h)^T S_t^h                           # (head_dim,) per head
    y = O W_out

Both SSMs are linear time-invariant, ``x_t = A x_{t-1} + B u_t``, ``y_t = C x_t + D u_t``,
so in parallel form each is a causal convolution with kernel ``K_l = C A^l B`` plus ``D u_t``:

- **shift SSM**: ``A`` the ``d_state x d_state`` shift matrix, ``B = e_1``. Its state is
  the last ``d_state`` inputs and its kernel is ``C`` itself (``d_state`` learned taps per
  channel); ``D`` is added to the current tap.
- **diagonal SSM** (S4D): ``d_state / 2`` complex modes per head, taken with their
  conjugates so the output is real; S4D-Lin initialisation ``A_m = -1/2 + iπm``, ``B = 1``,
  ``C`` complex Gaussian, step ``dt`` log-uniform in ``[1e-3, 1e-1]`` per head,
  zero-order-hold discretisation ``Ā = exp(dt A)``, ``B̄ = (exp(dt A) - 1) / A``. The kernel
  ``K_l = 2 Re(Σ_m C_m B̄_m Ā_m^l)`` is computed for the actual length by a Vandermonde
  product and applied by ``causal_conv`` (an FFT zero-padded to ``2L`` for long sequences),
  one kernel per head shared by the head's ``head_dim²`` state channels.

``initial_state`` / ``step`` run the same layer as a recurrence, one token at a time.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, field_validator
from torch import nn

from . import MIXERS
from ._conv import causal_conv
from .base import Mixer, MixerOptions

# (shift_state [B, d_model, d_state - 1] real, diag_state [B, H, head_dim, head_dim, d_state/2] complex)
H3State = tuple[torch.Tensor, torch.Tensor]

DT_MIN, DT_MAX = 1e-3, 1e-1


class H3Options(MixerOptions):
    d_state: int = Field(64, ge=2)  # shift-SSM taps and diagonal-SSM state size (d_state/2 complex modes)
    head_dim: int = Field(1, ge=1)
    bias: bool = True

    @field_validator("d_state")
    @classmethod
    def _even(cls, d_state: int) -> int:
        if d_state % 2:
            raise ValueError(f"d_state must be even (complex modes come in conjugate pairs), got {d_state}")
        return d_state


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@MIXERS.register("h3")
class H3(Mixer):
    """H3: ``Q ⊙ SSM_diag(SSM_shift(K) ⊗ V)``, multi-head, in parallel or recurrent form."""

    Options = H3Options
    default_state_mixer = "mlp"

    def __init__(self, d_model: int, options: H3Options, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        if d_model % options.head_dim:
            raise ValueError(f"d_model ({d_model}) must be divisible by head_dim ({options.head_dim})")
        self.d_state = options.d_state
        self.head_dim = options.head_dim
        self.n_heads = d_model // options.head_dim
        modes = options.d_state // 2
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=options.bias)  # Q, K, V

        # Shift SSM on K: C are the taps (C[:, j] weighs the input j steps back), D the skip.
        bound = 1 / math.sqrt(options.d_state)
        self.shift_C = nn.Parameter(torch.empty(d_model, options.d_state).uniform_(-bound, bound))
        self.shift_D = nn.Parameter(torch.empty(d_model).uniform_(-1, 1))

        # Diagonal SSM (S4D-Lin), one per head.
        h = self.n_heads
        log_dt = torch.rand(h) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN)
        self.log_dt = nn.Parameter(log_dt)
        self.A_re_log = nn.Parameter(torch.full((h, modes), math.log(0.5)))  # Re A = -exp(A_re_log)
        self.A_im = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).repeat(h, 1))
        self.C = nn.Parameter(torch.randn(h, modes, 2) * math.sqrt(0.5))  # complex, as (re, im)
        self.D = nn.Parameter(torch.randn(h))
        for p in (self.log_dt, self.A_re_log, self.A_im, self.D):
            p._no_weight_decay = True  # type: ignore[attr-defined]

        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias)

    # -- shared pieces -------------------------------------------------------------------

    def _shift_taps(self) -> torch.Tensor:
        """``(d_model, d_state)`` shift-SSM kernel with ``D`` folded into the current tap."""
        taps = self.shift_C.clone()
        taps[:, 0] = taps[:, 0] + self.shift_D
        return taps

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dt A, Ā, B̄, C)`` of the diagonal SSM (``B = 1``), each ``(H, modes)`` complex."""
        A = torch.complex(-torch.exp(self.A_re_log), self.A_im)
        dtA = torch.exp(self.log_dt).unsqueeze(-1) * A
        A_bar = torch.exp(dtA)
        B_bar = (A_bar - 1) / A
        return dtA, A_bar, B_bar, torch.view_as_complex(self.C.contiguous())

    def diag_kernel(self, length: int) -> torch.Tensor:
        """``(H, L)`` real kernel ``K_l = 2 Re(Σ_m C_m B̄_m Ā_m^l)`` (Vandermonde product)."""
        dtA, _, B_bar, C = self._discrete()
        steps = torch.arange(length, device=dtA.device, dtype=dtA.real.dtype)
        vandermonde = torch.exp(dtA.unsqueeze(-1) * steps)  # (H, modes, L)
        return 2 * torch.einsum("hm,hml->hl", C * B_bar, vandermonde).real

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., d_model)`` -> ``(..., H, head_dim)``."""
        return t.unflatten(-1, (self.n_heads, self.head_dim))

    # -- parallel form -------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        q, k, v = self.in_proj(x).chunk(3, dim=-1)  # (B, L, d) each
        k = causal_conv(k.transpose(1, 2), self._shift_taps()).transpose(1, 2)  # SSM_shift
        k, v, q = self._heads(k), self._heads(v), self._heads(q)  # (B, L, H, dh)
        # K̄ ⊗ V per head, laid out (B, d1, d2, H, L) so the kernel broadcasts over (d1, d2).
        kv = torch.einsum("blhi,blhj->bijhl", k, v)
        kernel = self.diag_kernel(length)  # (H, L)
        s = causal_conv(kv, kernel) + self.D.unsqueeze(-1) * kv  # SSM_diag
        y = torch.einsum("blhi,bijhl->blhj", q, s)  # Q^T S per head
        return self.out_proj(y.flatten(2))

    # -- recurrent form ------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> H3State:
        """Zero state: ``(shift_state (B, d_model, d_state-1), diag_state (B, H, dh, dh, d_state/2))``."""
        dtype = dtype if dtype is not None else self.in_proj.weight.dtype
        device = device if device is not None else self.in_proj.weight.device
        return (
            torch.zeros(batch_size, self.d_model, self.d_state - 1, device=device, dtype=dtype),
            torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, self.d_state // 2,
                        device=device, dtype=_complex_dtype(dtype)),
        )

    def step(self, x_t: torch.Tensor, state: H3State) -> tuple[torch.Tensor, H3State]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        shift_state, diag_state = state
        q, k, v = self.in_proj(x_t).chunk(3, dim=-1)  # (B, d)
        window = torch.cat([shift_state, k.unsqueeze(-1)], dim=-1)  # oldest ... newest
        k = (window * self._shift_taps().flip(-1)).sum(-1)
        shift_state = window[..., 1:]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, dh)
        kv = k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, d1, d2)
        _, A_bar, B_bar, C = (t[:, None, None, :] for t in self._discrete())  # (H, 1, 1, modes)
        diag_state = A_bar * diag_state + B_bar * kv.unsqueeze(-1)
        s = 2 * (diag_state * C).sum(-1).real + self.D[:, None, None] * kv  # (B, H, d1, d2)
        y = torch.einsum("bhi,bhij->bhj", q, s)
        return self.out_proj(y.flatten(1)), (shift_state, diag_state)
