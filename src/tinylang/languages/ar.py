"""Associative recall: recall the partner of a queried item from a list of key–value pairs.

An example with ``n`` pairs reads ``[BOS, k1, v1, ..., kn, vn, EOS, q, a, EOS]``: ``q``
repeats one key (or value) from the context and ``a`` is its value (or key).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from .base import BOS, EOS, LANGUAGES, POSITION_COLUMNS, SPECIAL_TOKENS, Language, LanguageConfig, split_rng

FIRST_ID = len(SPECIAL_TOKENS)


class ARConfig(LanguageConfig):
    """Associative recall. Keys are ids ``3 .. 3+num_kv/2-1``, values the next ``num_kv/2`` ids."""

    type: Literal["ar"] = "ar"
    num_kv: int
    min_pairs: int = Field(ge=1)
    max_pairs: int
    query_type: Literal["key", "value"] = "key"
    mask_nonquery: bool = True

    @field_validator("num_kv")
    @classmethod
    def _check_num_kv(cls, num_kv: int) -> int:
        if num_kv % 2:
            raise ValueError(f"num_kv must be even (keys and values are halves of the vocabulary), got {num_kv}")
        if num_kv < 4:
            raise ValueError(f"num_kv must be ≥ 4 (at least two keys and two values), got {num_kv}")
        return num_kv

    @model_validator(mode="after")
    def _check_pairs(self) -> ARConfig:
        if self.min_pairs > self.max_pairs:
            raise ValueError(f"min_pairs ({self.min_pairs}) must be ≤ max_pairs ({self.max_pairs})")
        if self.max_pairs > self.num_kv // 2:
            raise ValueError(
                f"max_pairs must be ≤ num_kv/2 = {self.num_kv // 2} (keys in an example are distinct), "
                f"got {self.max_pairs}"
            )
        return self


def sample_distinct(rng: np.random.Generator, rows: int, pool: int, k: int) -> np.ndarray:
    """``[rows, k]`` int64: per row, ``k`` distinct ints from ``range(pool)`` in uniformly random order."""
    if k * k <= 16 * pool:
        # Floyd's algorithm, one column at a time over all rows; then shuffle each row.
        out = np.empty((rows, k), dtype=np.int64)
        for i, j in enumerate(range(pool - k, pool)):
            t = rng.integers(0, j + 1, size=rows)
            taken = (out[:, :i] == t[:, None]).any(axis=1)
            out[:, i] = np.where(taken, j, t)
        return rng.permuted(out, axis=1)
    # Dense case: shuffle the whole pool per row, in chunks to bound memory.
    chunk = max(1, 2**22 // pool)
    parts = [
        rng.permuted(np.broadcast_to(np.arange(pool), (min(chunk, rows - s), pool)), axis=1)[:, :k]
        for s in range(0, rows, chunk)
    ]
    return np.concatenate(parts) if parts else np.empty((0, k), dtype=np.int64)


@LANGUAGES.register("ar")
class AssociativeRecall(Language):
    """Associative recall over ``num_kv/2`` keys and ``num_kv/2`` values."""

    Config = ARConfig
    config: ARConfig
    stat_columns = (
        "doc_length",
        "num_pairs",
        "query_orig_target_orig_dist",
        "query_query_orig_dist",
        "query_target_orig_dist",
    )
    schema = pa.schema(
        [("tokens", pa.list_(pa.int32())), ("query_type", pa.string()), ("answer", pa.int32())]
        + [(c, pa.int32()) for c in POSITION_COLUMNS]
        + [(c, pa.int32()) for c in stat_columns]
    )

    @property
    def num_keys(self) -> int:
        return self.config.num_kv // 2

    def vocabulary(self) -> list[str]:
        m = self.num_keys
        return SPECIAL_TOKENS + [f"k{i}" for i in range(m)] + [f"v{i}" for i in range(m)]

    def token_classes(self) -> dict[str, list[int]]:
        m = self.num_keys
        return {"key": [FIRST_ID, FIRST_ID + m], "value": [FIRST_ID + m, FIRST_ID + 2 * m]}

    def generate(self) -> dict[str, pd.DataFrame]:
        return {split: self.generate_split(split, n) for split, n in self.config.splits.items()}

    def generate_split(self, split: str, rows: int) -> pd.DataFrame:
        """``rows`` examples of one split, vectorised over examples."""
        cfg, m = self.config, self.num_keys
        rng = split_rng(cfg.seed, split)
        n = rng.integers(cfg.min_pairs, cfg.max_pairs + 1, size=rows)
        keys = sample_distinct(rng, rows, m, cfg.max_pairs) + FIRST_ID
        values = sample_distinct(rng, rows, m, cfg.max_pairs) + FIRST_ID + m
        pair = rng.integers(0, n)  # the queried pair, uniform in [0, n)

        # Padded [rows, 2*max_pairs + 5] layout; columns past each row's length are dropped below.
        length = 2 * n + 5
        seq = np.zeros((rows, 2 * cfg.max_pairs + 5), dtype=np.int32)
        seq[:, 0] = BOS
        seq[:, 1:-4:2] = keys
        seq[:, 2:-3:2] = values
        r = np.arange(rows)
        key_pos, value_pos = 1 + 2 * pair, 2 + 2 * pair
        query_orig, target_orig = (key_pos, value_pos) if cfg.query_type == "key" else (value_pos, key_pos)
        divider = length - 4
        seq[r, divider] = EOS
        seq[r, divider + 1] = seq[r, query_orig]
        seq[r, divider + 2] = answer = seq[r, target_orig]
        seq[r, divider + 3] = EOS

        flat = seq[np.arange(seq.shape[1]) < length[:, None]]
        offsets = np.concatenate([[0], np.cumsum(length)]).astype(np.int32)
        query_item = divider + 1
        columns = {
            "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            "query_type": pa.array(np.full(rows, cfg.query_type.upper(), dtype=object), pa.string()),
            "answer": answer,
            "bos": np.zeros(rows),
            "query_item_orig": query_orig,
            "target_item_orig": target_orig,
            "divider": divider,
            "query_item": query_item,
            "target_item": query_item + 1,
            "doc_length": length,
            "num_pairs": n,
            "query_orig_target_orig_dist": np.abs(query_orig - target_orig),
            "query_query_orig_dist": query_item - query_orig,
            "query_target_orig_dist": query_item - target_orig,
        }
        arrays = [
            col if isinstance(col, pa.Array) else pa.array(col.astype(np.int32))
            for col in columns.values()
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema).to_pandas()
