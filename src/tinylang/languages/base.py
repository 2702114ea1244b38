"""The contract every synthetic language meets, its registry, and dataset I/O.

A language directory holds one ``<split>.parquet`` per split and ``meta.json``;
``write_language`` produces it and ``read_meta`` / ``read_split`` read it back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ConfigDict, Field, field_validator

from tinylang.integrity import DIGEST_KEY, file_digest, is_intact, sealed
from tinylang.registry import Registry
from tinylang.strict import StrictModel

PAD, BOS, EOS = 0, 1, 2
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"]

SPLIT_NAMES = ("train", "dev", "test")
"""Allowed split names; a split's index here seeds its random generator."""

POSITION_COLUMNS = ("bos", "query_item_orig", "target_item_orig", "divider", "query_item", "target_item")
"""Probe-position columns (indices into ``tokens``) a language may provide."""


class LanguageConfig(StrictModel):
    """Fields every language config has; subclasses add ``type`` and their own fields."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0)  # every random draw of the language
    splits: dict[str, int] = {"train": 10000, "test": 1000}  # split name (train, dev, test) → examples

    @field_validator("splits")
    @classmethod
    def _check_splits(cls, splits: dict[str, int]) -> dict[str, int]:
        unknown = [name for name in splits if name not in SPLIT_NAMES]
        if unknown:
            raise ValueError(f"splits: unknown split name(s) {unknown}; allowed: {', '.join(SPLIT_NAMES)}")
        if "train" not in splits:
            raise ValueError(f"splits must include 'train' (allowed names: {', '.join(SPLIT_NAMES)})")
        bad = {name: n for name, n in splits.items() if n < 1}
        if bad:
            raise ValueError(f"splits: every split needs ≥ 1 example, got {bad}")
        return {name: splits[name] for name in SPLIT_NAMES if name in splits}

    def min_bytes(self) -> int:
        """A lower bound on the memory generating the language takes (about 100 bytes a row:
        its tokens, probe positions and statistics), to refuse at planning what cannot fit."""
        return 100 * sum(self.splits.values())


class Language(ABC):
    """A generator of tokenised examples.

    Subclasses set ``Config`` (a ``LanguageConfig`` subclass with a ``type`` literal),
    ``schema`` (the Arrow schema of a split's table) and ``stat_columns`` (columns
    summarised in ``meta.json``), and are registered in ``LANGUAGES`` by type.
    """

    Config: ClassVar[type[LanguageConfig]] = LanguageConfig
    schema: ClassVar[pa.Schema]
    stat_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: LanguageConfig):
        self.config = config

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """Token names indexed by id; ids 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>``."""

    @abstractmethod
    def token_classes(self) -> dict[str, list[int]]:
        """Class name → ``[start, stop)`` id range of interchangeable tokens."""

    @abstractmethod
    def generate(self) -> dict[str, pd.DataFrame]:
        """One DataFrame per split named in the config."""

    def generate_splits(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """The splits of ``generate`` one at a time, so that progress can be told; a language
        whose splits are drawn independently overrides it to yield each as soon as it is made."""
        yield from self.generate().items()


LANGUAGES: Registry[type[Language]] = Registry("language", base=Language, group="tinylang.languages")
log = logging.getLogger("tinylang.languages")


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The random generator of one split: reproducible, and different per split."""
    return np.random.default_rng([seed, SPLIT_NAMES.index(split)])


def parse_language_config(raw: dict[str, Any]) -> LanguageConfig:
    """Validate a raw config mapping into the Config of the language its ``type`` names."""
    allowed = ", ".join(LANGUAGES.names())
    if not isinstance(raw, dict) or "type" not in raw:
        raise ValueError(f"a language config needs a 'type' key; allowed types: {allowed}")
    LANGUAGES.known(raw["type"])
    return LANGUAGES.get(raw["type"]).Config.model_validate(raw)


def make_language(config: LanguageConfig) -> Language:
    """The Language instance for a validated config."""
    return LANGUAGES.get(config.type)(config)  # type: ignore[attr-defined]


def config_hash(config: LanguageConfig) -> str:
    """sha256 of the config's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _summary(values: np.ndarray) -> dict[str, float | int]:
    return {"mean": float(values.mean()), "min": values.min().item(), "max": values.max().item()}


def write_language(config: LanguageConfig, out_dir: Path) -> None:
    """Generate every split and write ``<split>.parquet`` files plus ``meta.json``.

    The output is a pure function of the config: same config, same bytes.
    """
    out_dir = Path(out_dir)
    language = make_language(config)
    splits, start = {}, time.perf_counter()
    for split, df in language.generate_splits():  # all before touching the disk: a bad config leaves nothing behind
        splits[split] = df
        log.info("%s language: split %s, %s examples (%d of %d splits, %.1f s so far)", config.type, split,
                 f"{len(df):,}", len(splits), len(config.splits), time.perf_counter() - start)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, df in splits.items():
        table = pa.Table.from_pandas(df, schema=language.schema, preserve_index=False)
        pq.write_table(table.replace_schema_metadata(None), out_dir / f"{split}.parquet", compression="zstd")
    meta = {
        "file_sha256": {split: file_digest(out_dir / f"{split}.parquet") for split in splits},
        "vocabulary": language.vocabulary(),
        "token_classes": language.token_classes(),
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash(config),
        "splits": {split: len(df) for split, df in splits.items()},
        "stats": {
            split: {col: _summary(df[col].to_numpy()) for col in language.stat_columns}
            for split, df in splits.items()
        },
    }
    (out_dir / "meta.json").write_text(json.dumps(sealed(meta), sort_keys=True, indent=2) + "\n")


class LanguageDataError(ValueError):
    """A language directory's file is truncated, corrupt or edited so it no longer matches its
    ``meta.json``; the message names the file and how to get it written again."""


def regenerate_hint(language_dir: Path) -> str:
    """How to get a language directory written again (generation is deterministic)."""
    return (f"write it again: snakemake --cores all --forcerun {language_dir} (add the study's --configfile if it "
            "has one; what was computed from it is redone), or outside the workflow tinylang.languages.write_language")


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; it is written by tinylang.languages.write_language")
    return path


def read_meta(language_dir: Path) -> dict[str, Any]:
    """The ``meta.json`` of a language directory (LanguageDataError if it is not valid JSON)."""
    path = _existing(Path(language_dir) / "meta.json")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LanguageDataError(f"{path} is truncated or corrupt ({err}); {regenerate_hint(path.parent)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("vocabulary"), list):
        raise LanguageDataError(f"{path} has no 'vocabulary' list; {regenerate_hint(path.parent)}")
    if is_intact(meta) is False:
        raise LanguageDataError(f"{path} is damaged: its contents do not match the SHA-256 written with it; "
                                f"{regenerate_hint(path.parent)}") from None
    return {k: v for k, v in meta.items() if k != DIGEST_KEY}


def checked_split_path(language_dir: Path, split: str, meta: dict[str, Any] | None = None) -> Path:
    """The path of ``split``'s Parquet file once its SHA-256 matches the one ``meta.json``
    recorded (languages written before hashes are not checked); LanguageDataError if not.
    ``meta``: the directory's meta when the caller has read it already."""
    language_dir = Path(language_dir)
    path = _existing(language_dir / f"{split}.parquet")
    meta = read_meta(language_dir) if meta is None else meta
    expected = meta.get("file_sha256", {}).get(split)
    if expected is not None and file_digest(path) != expected:
        raise LanguageDataError(f"language split {path} is damaged: its bytes do not match the SHA-256 in "
                                f"{language_dir / 'meta.json'}; {regenerate_hint(language_dir)}") from None
    return path


def read_split(language_dir: Path, split: str, meta: dict[str, Any] | None = None) -> pd.DataFrame:
    """One split of a language directory as a DataFrame (``tokens`` holds int32 arrays);
    LanguageDataError when the Parquet file is truncated or corrupt."""
    path = checked_split_path(language_dir, split, meta)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = " ".join(str(err).split())
        raise LanguageDataError(
            f"language split {path} ({path.stat().st_size} bytes) is truncated or corrupt "
            f"(pyarrow: {reason}); {regenerate_hint(path.parent)}"
        ) from None
    return table.to_pandas()
