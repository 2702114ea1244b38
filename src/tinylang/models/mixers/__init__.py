"""Sequence mixers, one module each, registered by the name a model config uses.

Every module in this package is imported here, so adding a mixer is adding a file that
decorates its class with ``@MIXERS.register("name")``.
"""

import importlib
import pkgutil

from tinylang.registry import Registry

from .base import (
    AttentionMixer,
    Mixer,
    MixerOptions,
    RecurrenceUnavailable,
    RecurrentMixer,
    has_recurrence,
    stores_attention,
)

MIXERS: Registry[type[Mixer]] = Registry("mixer", base=Mixer, group="tinylang.mixers")

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base" and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["MIXERS", "AttentionMixer", "Mixer", "MixerOptions", "RecurrenceUnavailable", "RecurrentMixer",
           "has_recurrence", "stores_attention"]
