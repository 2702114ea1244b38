"""Architectures: one backbone, many mixers.

The config side (``ModelConfig``, the registries, ``HOOK_POINTS``) imports without torch, so a
study is validated and planned without it; the rest is imported on first use.
"""

from __future__ import annotations

import importlib

from .config import STATE_MIXERS, ModelConfig
from .hooks import HOOK_POINTS
from .mixers import MIXERS

_LAZY = {
    "kernels": None, "pyvene_hook": None,
    "Block": "backbone", "LanguageModel": "backbone", "build_model": "backbone",
    "CheckpointError": "checkpoint", "checkpoint_path": "checkpoint", "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "export_checkpoint": "export", "export_model": "export", "load_exported": "export",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name] or name}")
    return module if _LAZY[name] is None else getattr(module, name)


__all__ = ["HOOK_POINTS", "MIXERS", "STATE_MIXERS", "ModelConfig", *_LAZY]
