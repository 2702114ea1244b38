"""Sequence mixers, one module each, registered by the name a model config uses.

A built-in mixer is a module here whose class is decorated with ``@MIXERS.register("name")``,
its options in ``options.py`` (``BUILT_IN_MIXERS`` names the module): a config is validated and
a workflow planned from the options alone, and the module (and torch) is imported only when a
model is built. ``mixer_spec`` answers what planning asks of any mixer, built in or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinylang.lazy import lazy_attributes
from tinylang.registry import Registry

from .options import BUILT_IN_MIXERS, MixerOptions

MIXERS: Registry = Registry("mixer", base=f"{__name__}.base:Mixer", group="tinylang.mixers",
                            modules={name: f"{__name__}.{module}" for name, (module, _) in BUILT_IN_MIXERS.items()})


@dataclass(frozen=True)
class MixerSpec:
    """What planning needs of a mixer: its options class, the state mixer its blocks have by
    default, whether it keeps attention probabilities, and its shape check
    ``(d_model, n_layers, options)`` (a ValueError when they do not fit)."""

    options: type[MixerOptions]
    default_state_mixer: str
    stores_attention: bool
    check_shape: Callable[[int, int, Any], None]


def mixer_spec(name: str) -> MixerSpec:
    """The spec of mixer ``name``: from its options for a built-in one (no torch), else from its class."""
    if name in BUILT_IN_MIXERS:
        options = BUILT_IN_MIXERS[name][1]
        return MixerSpec(options, options.default_state_mixer, options.stores_attention,
                         lambda d_model, n_layers, chosen: chosen.check_shape(d_model, n_layers))
    from .base import stores_attention

    cls = MIXERS.get(name)
    return MixerSpec(cls.Options, cls.default_state_mixer, stores_attention(cls), cls.check_shape)


_FROM_BASE = ("AttentionMixer", "Mixer", "RecurrenceUnavailable", "RecurrentMixer", "has_recurrence", "stores_attention")

__getattr__ = lazy_attributes(__name__, dict.fromkeys(_FROM_BASE, "base"))  # the nn.Module side, with torch


__all__ = ["MIXERS", "MixerOptions", "MixerSpec", "mixer_spec", *_FROM_BASE]
