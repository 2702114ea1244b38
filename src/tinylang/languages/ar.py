"""Associative recall: recall the partner of a queried item from a list of key–value pairs.

An example with ``n`` pairs reads ``[BOS, k1, v1, ..., kn, vn, EOS, q, a, EOS]``: ``q``
repeats one key (or value) from the context and ``a`` is its value (or key).

Generalisation split (``train_test_split > 0``): a seeded fraction of all
``(key, value)`` combinations is held out. ``train`` and ``dev`` never *query* a
held-out pair and ``test`` queries only held-out pairs. As in the original paper
code, only the queried pair is restricted: the other pairs of a context are drawn
freely, so a train example may show a held-out pair that it does not query, and a
test example may show pairs that are not held out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from .base import BOS, EOS, LANGUAGES, POSITION_COLUMNS, SPECIAL_TOKENS, Language, LanguageConfig, split_rng

FIRST_ID = len(SPECIAL_TOKENS)

HELD_OUT_STREAM = 0x48454C44  # "HELD": the held-out pairs' generator is [seed, HELD_OUT_STREAM]
MAX_RESAMPLE_ROUNDS = 1000
"""Rounds of redrawing the examples that have no pair their split may query, before giving up."""


class ARConfig(LanguageConfig):
    """Associative recall. Keys are ids ``3 .. 3+num_kv/2-1``, values the next ``num_kv/2`` ids.

    ``train_test_split`` holds out each (key, value) combination with that probability,
    drawn from ``seed`` alone: ``test`` then queries only held-out pairs, ``train`` and
    ``dev`` never do. A ``dev`` split needs ``train_test_split > 0``.
    """

    type: Literal["ar"] = "ar"  # associative recall
    num_kv: int  # keys and values together (half each)
    min_pairs: int = Field(ge=1)  # key-value pairs per example, at least
    max_pairs: int  # and at most (distinct keys, so ≤ num_kv / 2)
    query_type: Literal["key", "value"] = "key"  # what the query repeats: a key (answer: its value) or a value
    mask_nonquery: bool = True  # only the answer is a training target
    train_test_split: float = Field(0.0, ge=0.0, lt=1.0)  # share of (key, value) pairs only test queries

    def min_bytes(self) -> int:
        return super().min_bytes() + 64 * self.num_kv  # the vocabulary: a string per token

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
        if "dev" in self.splits and self.train_test_split == 0:
            raise ValueError(
                "splits: a 'dev' split needs held-out pairs (train_test_split > 0); with "
                "train_test_split = 0 it would be a second train sample, so drop 'dev' or hold pairs out"
            )
        return self


def sample_distinct(rng: np.random.Generator, rows: int, pool: int, k: int) -> np.ndarray:
    """``[rows, k]`` int64: per row, ``k`` distinct ints from ``range(pool)`` in uniformly random order."""
    if k * k <= 16 * pool:
        # Floyd's algorithm, one column at a time over all rows; then shuffle each row.
        # Columns are built as contiguous rows of a [k, rows] array: comparing a new column
        # with each earlier one is then a cheap vector op.
        cols = np.empty((k, rows), dtype=np.int64)
        taken = np.empty(rows, dtype=bool)
        hit = np.empty(rows, dtype=bool)
        for i, j in enumerate(range(pool - k, pool)):
            t = rng.integers(0, j + 1, size=rows)
            taken.fill(False)
            for earlier in cols[:i]:
                np.equal(earlier, t, out=hit)
                taken |= hit
            cols[i] = np.where(taken, j, t)
        return rng.permuted(np.ascontiguousarray(cols.T), axis=1)
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
        "eligible_pairs",
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

    @functools.cached_property
    def held_out(self) -> np.ndarray | None:
        """``[num_keys, num_keys]`` bool: ``held_out[k, v]`` for key index ``k`` and value index ``v``.

        None when ``train_test_split`` is 0. Drawn from the language seed alone, so every
        split (and every split size) sees the same held-out pairs.
        """
        fraction = self.config.train_test_split
        if fraction == 0:
            return None
        rng = np.random.default_rng([self.config.seed, HELD_OUT_STREAM])
        m = self.num_keys
        return rng.random((m, m), dtype=np.float32) < np.float32(fraction)

    def generate(self) -> dict[str, pd.DataFrame]:
        return dict(self.generate_splits())

    def generate_splits(self) -> Iterator[tuple[str, pd.DataFrame]]:
        self._check_held_out()
        for split, n in self.config.splits.items():
            yield split, self.generate_split(split, n)

    def _check_held_out(self) -> None:
        """Fail before generating anything if a split has no pair it could ever query."""
        held = self.held_out
        if held is None:
            return
        cfg, total = self.config, held.size
        count = int(held.sum())
        where = f"train_test_split = {cfg.train_test_split} with num_kv = {cfg.num_kv} and seed = {cfg.seed}"
        if "test" in cfg.splits and count == 0:
            raise ValueError(
                f"train_test_split: {where} holds out none of the {total} (key, value) pairs, "
                "but the 'test' split queries only held-out pairs; raise train_test_split or num_kv"
            )
        if count == total:
            raise ValueError(
                f"train_test_split: {where} holds out all {total} (key, value) pairs, "
                "so the 'train' split has no pair to query; lower train_test_split or raise num_kv"
            )

    def _draw(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair counts ``[rows]`` and key / value indices ``[rows, max_pairs]`` (0-based, distinct per row)."""
        cfg, m = self.config, self.num_keys
        n = rng.integers(cfg.min_pairs, cfg.max_pairs + 1, size=rows)
        keys = sample_distinct(rng, rows, m, cfg.max_pairs)
        values = sample_distinct(rng, rows, m, cfg.max_pairs)
        return n, keys, values

    def _eligible(self, split: str, n: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``[rows, max_pairs]`` bool: the pairs of each example that this split may query."""
        present = np.arange(self.config.max_pairs) < n[:, None]
        if self.held_out is None:
            return present
        held = self.held_out[keys, values]
        return present & (held if split == "test" else ~held)

    def generate_split(self, split: str, rows: int) -> pd.DataFrame:
        """``rows`` examples of one split, vectorised over examples.

        Examples are drawn freely; the queried pair is uniform among the example's
        eligible pairs (random scores masked by eligibility, argmax). Examples with no
        eligible pair are redrawn, all at once, for up to ``MAX_RESAMPLE_ROUNDS`` rounds.
        """
        cfg, m = self.config, self.num_keys
        rng = split_rng(cfg.seed, split)
        n, keys, values, eligible, pair = self._draw_queried(split, rng, rows)
        keys = keys + FIRST_ID
        values = values + FIRST_ID + m

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

        return self._table(seq, length, answer, query_orig, target_orig, divider, n, eligible)

    def _draw_queried(self, split: str, rng: np.random.Generator, rows: int):
        """``rows`` drawn examples (pair counts, keys, values), which pairs each may query, and
        the queried pair: uniform among the eligible ones. Examples with none are redrawn, all
        at once, for up to ``MAX_RESAMPLE_ROUNDS`` rounds."""
        cfg = self.config
        n, keys, values = self._draw(rng, rows)
        eligible = self._eligible(split, n, keys, values)
        if self.held_out is None:
            return n, keys, values, eligible, rng.integers(0, n)  # every pair is eligible: uniform in [0, n)
        todo = np.flatnonzero(~eligible.any(axis=1))
        for _ in range(MAX_RESAMPLE_ROUNDS):
            if not todo.size:
                break
            n[todo], keys[todo], values[todo] = self._draw(rng, todo.size)
            eligible[todo] = self._eligible(split, n[todo], keys[todo], values[todo])
            todo = todo[~eligible[todo].any(axis=1)]
        if todo.size:
            wanted = "held-out" if split == "test" else "non-held-out"
            raise ValueError(
                f"train_test_split: after {MAX_RESAMPLE_ROUNDS} rounds of redrawing, {todo.size} of {rows} "
                f"{split!r} examples still had no {wanted} pair to query (train_test_split = "
                f"{cfg.train_test_split}, min_pairs = {cfg.min_pairs}, max_pairs = {cfg.max_pairs}); "
                "such examples are too rare: change train_test_split or raise min_pairs"
            )
        scores = np.where(eligible, rng.random(eligible.shape), -1.0)
        return n, keys, values, eligible, scores.argmax(axis=1)

    def _table(self, seq, length, answer, query_orig, target_orig, divider, n, eligible) -> pd.DataFrame:
        """The split's rows (the schema's columns) from the padded token matrix and positions."""
        cfg, rows = self.config, len(seq)
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
            "eligible_pairs": eligible.sum(axis=1),
        }
        arrays = [
            col if isinstance(col, pa.Array) else pa.array(col.astype(np.int32))
            for col in columns.values()
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema).to_pandas()
