"""H3, the Hungry Hungry Hippos layer (Fu et al. 2023), as the paper's code builds it.

The default is the layer of zoology's ``zoology.mixers.h3.H3`` with the paper's settings
(``d_state = l_max = n_positions = 1024``, ``head_dim`` 2). For input ``u`` ``(L, d)`` and
``H = d / head_dim`` heads of ``head_dim`` channels::

    Q = u W_Q + b_Q,  K = u W_K + b_K,  V = u W_V + b_V      # three nn.Linear, with biases
    K̄ = SSM_shift(K)                                        # per channel
    S^h = SSM_diag^h(K̄^h ⊗ V^h)                             # (head_dim × head_dim) per head
    O^h_j = Σ_i Q^h_i S^h_ij
    y = O W_out + b_out                                      # output_linear

``O`` is laid out with the head index fastest (channel ``j * H + h``), as in the original.
Both SSMs are linear time-invariant, ``x_t = A x_{t-1} + B u_t``, ``y_t = Re(C x_t) + D u_t``,
so each is a causal convolution with kernel ``K_l = C A^l B`` (applied by ``causal_conv``, an FFT
zero-padded to ``2L`` for long sequences) plus ``D u_t``; both kernels are cut to ``l_max`` taps.

- **shift SSM** on ``K`` (per channel, ``d_state`` states): ``A`` shifts the state by one,
  ``B`` and ``C`` are learned ``(d, d_state)``. ``B`` starts at ``e_1``, ``C`` uniform in
  ``±1/sqrt(d_state)`` (``nn.Conv1d``'s init), ``D`` standard normal. The kernel is the
  correlation ``K_j = Σ_n B_n C_{n+j}`` (``= C_j`` at initialisation).
- **diagonal SSM** (S4D) per head on each of the ``head_dim²`` channels of ``K̄ ⊗ V``:
  ``d_state / 2`` complex modes taken with their conjugates (the ``2 Re``). Learned: ``A``
  (``Re A = -exp(A_re_log)``, ``Im A``), ``B`` and ``C`` complex, ``log_dt``, ``D``. S4D-Lin init:
  ``A_m = -1/2 + iπm``, ``B = 1``, ``C`` complex standard normal, ``dt`` log-uniform in
  ``[1e-3, 1e-1]``, ``D`` standard normal. Bilinear discretisation:
  ``Ā = (1 + dtA/2) / (1 - dtA/2)``, ``B̄ = dt B / (1 - dtA/2)``, kernel
  ``K_l = 2 Re(Σ_m C_m B̄_m Ā_m^l)`` (a Vandermonde product).

The projections are ``nn.Linear`` (the backbone's zoology init gives them N(0, 0.02)); the SSM
tensors are raw parameters kept as built. ``output_linear`` keeps zoology's name: its init
rescales only modules named ``out_proj``, so nothing here is rescaled with depth. ``bias`` is
accepted and ignored, as zoology's H3 ignores it (the studies pass ``bias: false`` to every mixer).
The original tags the SSM tensors with their own weight decay (0) and learning rate, but its
AdamW ignores those tags; we carry none.

``initial_state`` / ``step`` run the same layer as a recurrence, one token at a time (equal to
the parallel form for sequences up to ``l_max``); ``forward_with_state`` steps through the
sequence with them. The shift SSM's state is kept as its last
``d_state - 1`` inputs, which with the taps ``K_j`` gives the same output as the shifted state.

Named variants (never the default): ``learned_B: false`` keeps both ``B`` at their
initialisation (``e_1`` and 1) as buffers, our earlier H3; ``discretization: zoh`` uses the
zero-order hold ``Ā = exp(dtA)``, ``B̄ = (exp(dtA) - 1) B / A`` (also the original's option).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import MIXERS
from ._conv import causal_conv
from ._dt import random_log_dt
from .base import RecurrentMixer
from .options import H3Options

# (shift_state [B, d_model, d_state - 1] real, diag_state [B, H, head_dim, head_dim, d_state/2] complex)
H3State = tuple[torch.Tensor, torch.Tensor]

DT_MIN, DT_MAX = 1e-3, 1e-1


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@MIXERS.register("h3")
class H3(RecurrentMixer):
    """H3: ``Q · SSM_diag(SSM_shift(K) ⊗ V)``, multi-head, in parallel or recurrent form."""

    Options = H3Options
    rescaled_projections = ()  # zoology's H3 has no `out_proj`

    def __init__(self, d_model: int, options: H3Options, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.d_state = options.d_state
        self.head_dim = options.head_dim
        self.n_heads = d_model // options.head_dim
        self.l_max = options.l_max
        self.zoh = options.discretization == "zoh"
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self._init_shift_ssm(d_model, options)
        self._init_diag_ssm(self.n_heads, options)
        self.output_linear = nn.Linear(d_model, d_model)

    def _register_B(self, name: str, value: torch.Tensor, learned: bool) -> None:
        if learned:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _init_shift_ssm(self, d_model: int, options: H3Options) -> None:
        n = options.d_state
        shift_B = torch.zeros(d_model, n)
        shift_B[:, 0] = 1.0
        self._register_B("shift_B", shift_B, options.learned_B)
        bound = 1 / math.sqrt(n)
        self.shift_C = nn.Parameter(torch.empty(d_model, n).uniform_(-bound, bound))
        self.shift_D = nn.Parameter(torch.randn(d_model))

    def _init_diag_ssm(self, h: int, options: H3Options) -> None:
        modes = options.d_state // 2
        self.log_dt = nn.Parameter(random_log_dt(h, DT_MIN, DT_MAX))
        self.A_re_log = nn.Parameter(torch.full((h, modes), math.log(0.5)))  # Re A = -exp(A_re_log)
        self.A_im = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).repeat(h, 1))
        B = torch.zeros(h, modes, 2)
        B[..., 0] = 1.0  # complex (re, im)
        self._register_B("B", B, options.learned_B)
        self.C = nn.Parameter(torch.randn(h, modes, 2) * math.sqrt(0.5))  # complex standard normal
        self.D = nn.Parameter(torch.randn(h))

    # -- shared pieces -------------------------------------------------------------------

    def shift_kernel(self, length: int) -> torch.Tensor:
        """``(d_model, min(length, d_state))`` taps ``K_j = Σ_n B_n C_{n+j}`` of the shift SSM."""
        taps = min(length, self.d_state)
        n = 2 * self.d_state  # zero-padded: the FFT correlation does not wrap around
        work = torch.promote_types(self.shift_C.dtype, torch.float32)
        B_f = torch.fft.rfft(self.shift_B.to(work), n=n)
        C_f = torch.fft.rfft(self.shift_C.to(work), n=n)
        return torch.fft.irfft(B_f.conj() * C_f, n=n)[..., :taps].to(self.shift_C.dtype)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Ā, B̄, C)`` of the diagonal SSM, each ``(H, modes)`` complex."""
        A = torch.complex(-torch.exp(self.A_re_log), self.A_im)
        dt = torch.exp(self.log_dt).unsqueeze(-1)
        dtA = dt * A
        B = torch.view_as_complex(self.B.contiguous())
        if self.zoh:
            A_bar = torch.exp(dtA)
            B_bar = (A_bar - 1) / A * B
        else:
            A_bar = (1 + dtA / 2) / (1 - dtA / 2)
            B_bar = dt * B / (1 - dtA / 2)
        return A_bar, B_bar, torch.view_as_complex(self.C.contiguous())

    def diag_kernel(self, length: int) -> torch.Tensor:
        """``(H, length)`` real kernel ``K_l = 2 Re(Σ_m C_m B̄_m Ā_m^l)`` (Vandermonde product)."""
        A_bar, B_bar, C = self._discrete()
        steps = torch.arange(length, device=A_bar.device, dtype=A_bar.real.dtype)
        vandermonde = torch.exp(A_bar.log().unsqueeze(-1) * steps)  # (H, modes, L)
        return 2 * torch.einsum("hm,hml->hl", C * B_bar, vandermonde).real

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., d_model)`` -> ``(..., H, head_dim)``: channel ``h * head_dim + i``."""
        return t.unflatten(-1, (self.n_heads, self.head_dim))

    # -- parallel form -------------------------------------------------------------------

    def mix(self, x: torch.Tensor, state: H3State | None, need_state: bool):
        """The convolution form from the zero state; from a given state, or where the state
        after the sequence is wanted, the recurrence token by token (slower, the same numbers)."""
        if state is not None or need_state:
            return self.step_through(x, state)
        return self._convolve(x), None

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        taps = min(length, self.l_max)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, L, d)
        k_cf = k.transpose(1, 2)
        k = (causal_conv(k_cf, self.shift_kernel(taps)) + self.shift_D.unsqueeze(-1) * k_cf).transpose(1, 2)
        k, v, q = self._heads(k), self._heads(v), self._heads(q)  # (B, L, H, dh)
        # K̄ ⊗ V per head, laid out (B, d1, d2, H, L) so the kernel broadcasts over (d1, d2).
        kv = torch.einsum("blhi,blhj->bijhl", k, v)
        s = causal_conv(kv, self.diag_kernel(taps).to(kv.dtype)) + self.D.unsqueeze(-1) * kv
        y = torch.einsum("blhi,bijhl->bljh", q, s)  # Q^T S per head, head index fastest
        return self.output_linear(y.flatten(2))

    # -- recurrent form ------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> H3State:
        """Zero state: ``(shift_state (B, d_model, d_state-1), diag_state (B, H, dh, dh, d_state/2))``."""
        weight = self.q_proj.weight
        dtype = dtype if dtype is not None else weight.dtype
        device = device if device is not None else weight.device
        return (
            torch.zeros(batch_size, self.d_model, self.d_state - 1, device=device, dtype=dtype),
            torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, self.d_state // 2,
                        device=device, dtype=_complex_dtype(dtype)),
        )

    def step(self, x_t: torch.Tensor, state: H3State) -> tuple[torch.Tensor, H3State]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        shift_state, diag_state = state
        q, k, v = self.q_proj(x_t), self.k_proj(x_t), self.v_proj(x_t)  # (B, d)
        window = torch.cat([shift_state, k.unsqueeze(-1)], dim=-1)  # oldest ... newest
        taps = self.shift_kernel(self.d_state).flip(-1)  # oldest tap first
        k = (window * taps).sum(-1) + self.shift_D * k
        shift_state = window[..., 1:]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, dh)
        kv = k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, d1, d2)
        A_bar, B_bar, C = (t[:, None, None, :] for t in self._discrete())  # (H, 1, 1, modes)
        diag_state = A_bar * diag_state + B_bar * kv.unsqueeze(-1)
        s = 2 * (diag_state * C).sum(-1).real + self.D[:, None, None] * kv  # (B, H, d1, d2)
        y = torch.einsum("bhi,bhij->bjh", q, s)
        return self.output_linear(y.flatten(1)), (shift_state, diag_state)
