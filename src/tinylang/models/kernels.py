"""Optional fused CUDA kernels (``pip install tinylang[cuda]``), found once and logged.

mamba-ssm and causal-conv1d cannot even be imported without CUDA, so every lookup is guarded;
mixers fall back to their pure-PyTorch reference whenever a kernel is missing or the tensors are
not on a GPU. Parameter names are the same on both paths, so checkpoints move freely.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

log = logging.getLogger("tinylang.kernels")


def _find(module: str, name: str) -> Callable[..., Any] | None:
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except Exception as err:  # ImportError, or OSError/RuntimeError from a CUDA-less import
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


def log_path_once(module: Any, name: str, fused: bool) -> None:
    """Log, once per module instance, whether it ran a fused kernel or the reference."""
    if getattr(module, "_path_logged", None) != fused:
        module._path_logged = fused
        log.info("%s (layer %s): %s", name, getattr(module, "layer_idx", "?"),
                 "fused CUDA kernels" if fused else "pure-PyTorch reference")
