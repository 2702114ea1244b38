"""Causal long convolutions shared by the convolutional mixers (BaseConv, Hyena, H3).

All functions work channel-first: signals are ``(..., channels, L)``. Every convolution
here is causal, ``y[t] = sum_{s <= t} k[t - s] * u[s]``, with no wrap-around:

- ``causal_conv`` picks the method by length. For short sequences it multiplies by the
  filter's lower-triangular Toeplitz matrix (``toeplitz_causal_conv``: exact, so a future
  input contributes exactly zero, and faster on a CPU than an FFT for the tiny models this
  package trains); from ``FFT_MIN_LENGTH`` on it multiplies spectra (``fft_causal_conv``).
- ``direct_causal_conv`` uses ``F.conv1d`` (cost linear in the length times the taps).
- ``fft_causal_conv`` zero-pads signal and filter to ``2L`` before the FFT, so the circular
  convolution the FFT computes equals the linear one on the first ``L`` outputs. It runs
  in at least float32 (half-precision FFTs are too coarse and limited to powers of two).

Short learned filters of a few taps are ``_shortconv.ShortConv`` (``nn.Conv1d`` parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FFT_MIN_LENGTH = 64
"""Sequences at least this long are convolved by FFT; shorter ones directly."""


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution of ``u`` ``(..., C, L)`` with ``k`` ``(C, L)`` (broadcast) via FFT.

    Both are zero-padded to ``n = 2L`` (no wrap-around); the result has ``u``'s dtype.
    """
    length = u.shape[-1]
    n = 2 * length
    work = torch.promote_types(u.dtype, torch.float32)
    u_f = torch.fft.rfft(u.to(work), n=n)
    k_f = torch.fft.rfft(k.to(work), n=n)
    return torch.fft.irfft(u_f * k_f, n=n)[..., :length].to(u.dtype)


def _fit(k: torch.Tensor, length: int) -> torch.Tensor:
    """``k`` ``(C, K)`` truncated or zero-padded to ``(C, length)``."""
    if k.shape[-1] >= length:
        return k[..., :length]
    return F.pad(k, (0, length - k.shape[-1]))


def toeplitz_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution of ``u`` ``(..., C, L)`` with ``k`` ``(C, K)`` as a product with the
    ``(C, L, L)`` Toeplitz matrix ``T[c, s, t] = k[c, t - s]`` (zero for ``t < s``)."""
    length = u.shape[-1]
    k = _fit(k, length).to(u.dtype)
    idx = torch.arange(length, device=u.device)
    lag = idx.unsqueeze(0) - idx.unsqueeze(1)  # lag[s, t] = t - s
    toeplitz = k[:, lag.clamp(min=0)] * (lag >= 0)
    return torch.einsum("...cs,cst->...ct", u, toeplitz)


def direct_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution of ``u`` ``(..., C, L)`` with ``k`` ``(C, K)`` (any ``K``) by ``F.conv1d``.

    Filter taps beyond ``L`` are dropped (they cannot reach any output).
    """
    *lead, channels, length = u.shape
    k = k[:, :length].to(u.dtype)
    taps = k.shape[-1]
    flat = u.reshape(-1, channels, length)
    # conv1d computes a correlation: flip the filter, pad on the left only.
    y = F.conv1d(F.pad(flat, (taps - 1, 0)), k.flip(-1).unsqueeze(1), groups=channels)
    return y.reshape(*lead, channels, length)


def causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution of ``u`` ``(..., C, L)`` with ``k`` ``(C, K)``.

    ``K`` may differ from ``L``: a longer filter is truncated, a shorter one zero-padded.
    Uses the FFT from ``FFT_MIN_LENGTH`` on, the Toeplitz product below.
    """
    length = u.shape[-1]
    if length < FFT_MIN_LENGTH:
        return toeplitz_causal_conv(u, k)
    return fft_causal_conv(u, _fit(k, length))
