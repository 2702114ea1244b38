"""Synthetic languages, one module each, registered by the ``type`` a language config uses.

The torch half (``TokenTensors``, ``load_tensors``, ``to_tensors`` in ``dataset``) loads on first
use: a language's files and statistics are read by figure jobs, which never import torch.
"""

from tinylang.lazy import lazy_attributes

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

__getattr__ = lazy_attributes(__name__, dict.fromkeys(_TENSORS, "dataset"))


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
