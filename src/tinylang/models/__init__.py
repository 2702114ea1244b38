"""Architectures: one backbone, many mixers.

The config side (``ModelConfig``, the registries, ``HOOK_POINTS``) imports without torch, so a
study is validated and planned without it; the rest is imported on first use.
"""

from __future__ import annotations

from tinylang.lazy import lazy_attributes

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

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["HOOK_POINTS", "MIXERS", "STATE_MIXERS", "ModelConfig", *_LAZY]
