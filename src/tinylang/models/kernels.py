"""Optional fused CUDA kernels (``pip install tinylang[cuda]``), found once and logged.

mamba-ssm, causal-conv1d and flash-linear-attention cannot even be imported without CUDA, so
every lookup is guarded; mixers fall back to their pure-PyTorch reference whenever a kernel is
missing or the tensors are not on a GPU (``fast_path_ok``). Parameter names are the same on both
paths, so checkpoints move freely.

Who uses what:

- ``selective_scan_fn`` (mamba-ssm): Mamba.
- ``causal_conv1d_fn`` (causal-conv1d): Mamba's convolution and ``ShortConv`` (the short
  convolutions of Based, DeltaNet, Hyena and the short-filter BaseConv), for 2 to 4 taps.
- ``chunk_delta_rule`` (flash-linear-attention): DeltaNet, in float16/bfloat16 only
  (``DELTA_RULE_DTYPES``: the kernel rejects float32).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger("tinylang.kernels")


def _find(module: str, name: str) -> Callable[..., Any] | None:
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except Exception as err:  # noqa: BLE001 - ImportError, or OSError/RuntimeError from a CUDA-less import
        log.debug("optional kernel %s.%s unavailable: %s", module, name, err)
        return None


@functools.cache
def selective_scan_fn() -> Callable[..., Any] | None:
    """mamba-ssm's fused selective scan, or None."""
    return _find("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")


@functools.cache
def causal_conv1d_fn() -> Callable[..., Any] | None:
    """causal-conv1d's fused depthwise causal convolution, or None."""
    return _find("causal_conv1d", "causal_conv1d_fn")


@functools.cache
def chunk_delta_rule() -> Callable[..., Any] | None:
    """flash-linear-attention's chunkwise delta rule, or None.

    Contract (fla >= 0.2): ``chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None,
    output_final_state=False, use_qk_l2norm_in_kernel=False)`` with ``q``, ``k`` ``(B, T, H, K)``,
    ``v`` ``(B, T, H, V)``, ``beta`` ``(B, T, H)``, state ``(B, H, K, V)``; it multiplies ``q`` by
    ``scale`` (default ``K**-0.5``) and returns ``(o (B, T, H, V), final_state or None)``.
    """
    return _find("fla.ops.delta_rule", "chunk_delta_rule")


DELTA_RULE_DTYPES = (torch.float16, torch.bfloat16)
"""Dtypes ``chunk_delta_rule`` accepts (it asserts the inputs are not float32)."""


def fast_path_ok(tensor: torch.Tensor) -> bool:
    """Whether a fused kernel may run on ``tensor``: it is on a CUDA device."""
    return tensor.is_cuda


def set_fast_path(model: torch.nn.Module, enabled: bool) -> None:
    """Switch the fused kernels of every submodule with a ``use_fast_path`` flag on or off."""
    for module in model.modules():
        if hasattr(module, "use_fast_path"):
            module.use_fast_path = enabled


def log_path_once(module: Any, name: str, fused: bool) -> None:
    """Log, once per module instance and ``name``, whether it ran a fused kernel or the
    reference (again if that changes, e.g. after a move to the GPU)."""
    logged = module.__dict__.setdefault("_paths_logged", {})
    if logged.get(name) != fused:
        logged[name] = fused
        log.info("%s (layer %s): %s", name, getattr(module, "layer_idx", "?"),
                 "fused CUDA kernels" if fused else "pure-PyTorch reference")
