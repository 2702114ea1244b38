"""Synthetic languages, one module each, registered by the ``type`` a language config uses.

The torch half (``TokenTensors``, ``load_tensors``, ``to_tensors`` in ``dataset``) loads on first
use: a language's files and statistics are read by figure jobs, which never import torch.
"""

from importlib import import_module

# Importing a language module registers it.
from . import (
    ar,  # noqa: E402,F401
    atr,  # noqa: E402,F401
)
from .base import (
    BOS,
    EOS,
    LANGUAGES,
    PAD,
    POSITION_COLUMNS,
    SPLIT_NAMES,
    Language,
    LanguageConfig,
    config_hash,
    make_language,
    parse_language_config,
    read_meta,
    read_split,
    write_language,
)

_TENSORS = ("TokenTensors", "load_tensors", "to_tensors")


def __getattr__(name: str):
    if name in _TENSORS:
        return getattr(import_module(f"{__name__}.dataset"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BOS",
    "EOS",
    "LANGUAGES",
    "PAD",
    "POSITION_COLUMNS",
    "SPLIT_NAMES",
    "Language",
    "LanguageConfig",
    "TokenTensors",
    "config_hash",
    "load_tensors",
    "make_language",
    "parse_language_config",
    "read_meta",
    "read_split",
    "to_tensors",
    "write_language",
]
