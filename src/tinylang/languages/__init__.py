"""Synthetic languages, one module each, registered by the ``type`` a language config uses."""

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
from .dataset import TokenTensors, load_tensors, to_tensors  # noqa: E402

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
