"""Sequence mixers, one module each, registered by the name a model config uses."""

from tinylang.registry import Registry

from .base import Mixer, MixerOptions

MIXERS: Registry[type[Mixer]] = Registry("mixer")

# Importing a mixer module registers it.
from . import attention, mamba  # noqa: E402,F401

__all__ = ["MIXERS", "Mixer", "MixerOptions"]
