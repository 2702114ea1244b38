"""RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era").

Written from the paper's equations. With ``x_{-1} = 0`` (or the last token of an earlier
segment) and learned per-channel mix ratios ``mu`` in [0, 1]::

    r_t = W_r (mu_r * x_t + (1 - mu_r) * x_{t-1})        (token shift; likewise k_t, v_t)
    wkv_t = ( sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t )
          / ( sum_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t} )
    o_t = W_o (sigmoid(r_t) * wkv_t)

per channel, with decay ``w = exp(time_decay) > 0`` and bonus ``u = time_first``.

``wkv_t`` is a weighted average of ``v_0..v_t`` whose weights are a softmax over the
exponents ``E_{t,i}`` above, so both forms subtract a running maximum before exponentiating:

- ``wkv="scan"`` (default): a loop over time on ``(B, d)`` blocks with the state ``(a, b, p)``, the
  numerator and denominator sums scaled by ``e^{-p}`` with ``p`` the largest exponent so far
  (the recurrent form, ``step``, is one iteration of it)::

      out:    q = max(p, u + k_t);   wkv_t = (e^{p-q} a + e^{u+k_t-q} v_t) / (e^{p-q} b + e^{u+k_t-q})
      update: q = max(p - w, k_t);   a <- e^{p-w-q} a + e^{k_t-q} v_t;   b <- e^{p-w-q} b + e^{k_t-q};   p <- q

- ``wkv="softmax"``: all ``E_{t,i}`` at once, ``(B, L, L, d)``, minus their row maximum, then
  a masked weighted sum. ``O(L^2 d)`` memory; on one CPU thread (B=32, d=64, forward +
  backward) it was ~2x faster than the scan at L=11 and ~1.6x slower at L=37, hence not the
  default.

Initialisation (ours; the paper leaves it to the code): ``time_decay`` spreads over channels
from -5 (slow decay, long memory) to 3 (fast), ``time_first = log(0.3)``, and the mix ratios
ramp over channels (``mu_k = i/d``, ``mu_v = min(1, i/d + 0.3)``, ``mu_r = sqrt(i/d)``), so
channels see different blends of the current and previous token.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import MIXERS
from .base import RecurrentMixer
from .options import RWKVOptions

# (x_prev (B, d), a (B, d), b (B, d), p (B, d))
RWKVState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _wkv_step(k_t, v_t, w, u, a, b, p):
    """One token of the stable recurrence: ``wkv_t`` and the new ``(a, b, p)``; all ``(B, d)``."""
    first = u + k_t
    q = torch.maximum(p, first)
    e1, e2 = torch.exp(p - q), torch.exp(first - q)
    out = (e1 * a + e2 * v_t) / (e1 * b + e2)
    decayed = p - w
    q = torch.maximum(decayed, k_t)
    e1, e2 = torch.exp(decayed - q), torch.exp(k_t - q)
    return out, (e1 * a + e2 * v_t, e1 * b + e2, q)


def wkv_scan(k, v, w, u, state):
    """``wkv`` ``(B, L, d)`` by a loop over time, and the final ``(a, b, p)``."""
    a, b, p = state
    outs = []
    for t in range(k.shape[1]):
        out, (a, b, p) = _wkv_step(k[:, t], v[:, t], w, u, a, b, p)
        outs.append(out)
    return torch.stack(outs, dim=1), (a, b, p)


def wkv_softmax(k, v, w, u, state=None, need_state=False):
    """``wkv`` ``(B, L, d)`` from all exponents at once; optionally the final ``(a, b, p)``.

    The exponents are ``E_{t,i} = k_i + bias_{t,i}`` with a batch-free ``bias`` ``(L, L, d)``:
    ``-(t-1-i) w`` below the diagonal, ``u`` on it, ``-inf`` above. ``state`` ``(a, b, p)``
    summarises tokens before this segment: at position ``t`` it adds ``e^{p - t w} a`` to the
    numerator and ``e^{p - t w} b`` to the denominator.
    """
    batch, length, d = k.shape
    pos = torch.arange(length, device=k.device)
    rows, cols = pos.view(-1, 1), pos.view(1, -1)
    lag = (rows - 1 - cols).to(k.dtype).unsqueeze(-1)  # t - 1 - i, (L, L, 1)
    bias = torch.where((rows == cols).unsqueeze(-1), u, -lag * w)
    bias = bias.masked_fill((rows < cols).unsqueeze(-1), float("-inf"))
    E = k.unsqueeze(1) + bias  # (B, L_t, L_i, d)
    m = E.amax(2)  # (B, L, d), finite: the diagonal
    if state is not None:
        a0, b0, p0 = (s.unsqueeze(1) for s in state)  # (B, 1, d)
        prior = p0 - pos.to(k.dtype).view(-1, 1) * w  # (B, L, d)
        m = torch.maximum(m, prior)
    m = m.detach()  # the result does not depend on m
    weights = torch.exp(E - m.unsqueeze(2))
    num = (weights * v.unsqueeze(1)).sum(2)
    den = weights.sum(2)
    if state is not None:
        e_prior = torch.exp(prior - m)
        num = num + e_prior * a0
        den = den + e_prior * b0
    new_state = None
    if need_state:
        # exponents of the state after the last token: k_i - (L-1-i) w (and the prior's)
        last = k - ((length - 1) - pos).to(k.dtype).view(-1, 1) * w  # (B, L, d)
        p = last.amax(1)
        if state is not None:
            p_prior = state[2] - length * w
            p = torch.maximum(p, p_prior)
        e = torch.exp(last - p.unsqueeze(1))
        a, b = (e * v).sum(1), e.sum(1)
        if state is not None:
            e_prior = torch.exp(p_prior - p)
            a, b = a + e_prior * state[0], b + e_prior * state[1]
        new_state = (a, b, p)
    return num / den, new_state


@MIXERS.register("rwkv")
class RWKV(RecurrentMixer):
    """RWKV-4 time-mixing block (the attention-like half; the channel mixing is the MLP)."""

    Options = RWKVOptions

    def __init__(self, d_model: int, options: RWKVOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.wkv_algorithm = options.wkv
        frac = torch.arange(d_model, dtype=torch.float32) / d_model  # i / d
        spread = torch.arange(d_model, dtype=torch.float32) / max(d_model - 1, 1)
        self.time_decay = nn.Parameter(-5 + 8 * spread**0.7)  # w = exp(time_decay)
        self.time_first = nn.Parameter(torch.full((d_model,), math.log(0.3)))  # u
        self.time_mix_k = nn.Parameter(frac.clone())
        self.time_mix_v = nn.Parameter((frac + 0.3).clamp(max=1.0))
        self.time_mix_r = nn.Parameter(frac.sqrt())
        for p in (self.time_decay, self.time_first, self.time_mix_k, self.time_mix_v, self.time_mix_r):
            p._no_weight_decay = True  # type: ignore[attr-defined]

        self.key = nn.Linear(d_model, d_model, bias=options.bias)
        self.value = nn.Linear(d_model, d_model, bias=options.bias)
        self.receptance = nn.Linear(d_model, d_model, bias=options.bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=options.bias)

    def _rkv(self, x: torch.Tensor, x_prev: torch.Tensor):
        def interpolate(mu):
            return x * mu + x_prev * (1 - mu)

        r, k, v = (interpolate(mu) for mu in (self.time_mix_r, self.time_mix_k, self.time_mix_v))
        return self.receptance(r), self.key(k), self.value(v)

    # -- parallel form ---------------------------------------------------------------------

    def mix(self, x: torch.Tensor, state: RWKVState | None, need_state: bool):
        first = x.new_zeros(x.shape[0], 1, self.d_model) if state is None else state[0].unsqueeze(1)
        x_prev = torch.cat([first, x[:, :-1]], dim=1)
        r, k, v = self._rkv(x, x_prev)
        w, u = torch.exp(self.time_decay), self.time_first
        if self.wkv_algorithm == "scan":
            abp = self._zero_abp(x) if state is None else state[1:]
            wkv, abp = wkv_scan(k, v, w, u, abp)
        else:
            wkv, abp = wkv_softmax(k, v, w, u, None if state is None else state[1:], need_state)
        y = self.out_proj(torch.sigmoid(r) * wkv)
        return y, ((x[:, -1], *abp) if need_state else None)

    # -- recurrent form --------------------------------------------------------------------

    def _zero_abp(self, x: torch.Tensor):
        zeros = x.new_zeros(x.shape[0], self.d_model)
        return zeros, zeros, torch.full_like(zeros, torch.finfo(x.dtype).min)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> RWKVState:
        """``(x_prev, a, b, p)``, each ``(B, d_model)``: zeros, and ``p`` the dtype's lowest value."""
        weight = self.key.weight
        ref = torch.empty(batch_size, 0, device=device if device is not None else weight.device,
                          dtype=dtype if dtype is not None else weight.dtype)
        zeros = ref.new_zeros(batch_size, self.d_model)
        return (zeros, *self._zero_abp(ref))

    def step(self, x_t: torch.Tensor, state: RWKVState) -> tuple[torch.Tensor, RWKVState]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``."""
        x_prev, a, b, p = state
        r, k, v = self._rkv(x_t, x_prev)
        wkv, (a, b, p) = _wkv_step(k, v, torch.exp(self.time_decay), self.time_first, a, b, p)
        return self.out_proj(torch.sigmoid(r) * wkv), (x_t, a, b, p)
