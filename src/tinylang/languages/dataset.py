"""Splits as padded tensors: token ids, next-token labels and probe positions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from .base import PAD, POSITION_COLUMNS, LanguageDataError, checked_split_path, read_meta, read_split, regenerate_hint

IGNORE_INDEX = -100


@dataclass
class TokenTensors:
    """A split as tensors; row ``i`` is example ``i``.

    ``labels[i, t]`` is the target predicted from input position ``t`` (the token at
    ``t + 1``), or ``IGNORE_INDEX`` where no loss is taken.
    """

    input_ids: torch.Tensor  # [N, Lmax] int64, right-padded with PAD
    lengths: torch.Tensor  # [N] int64
    positions: dict[str, torch.Tensor]  # probe position name → [N] int64
    answer: torch.Tensor  # [N] int64
    query_type: np.ndarray  # [N] str
    labels: torch.Tensor  # [N, Lmax] int64
    # Where several answers are valid (ATR): the target distribution over answer ids, as
    # ids [N, A] padded with PAD and their probabilities [N, A] (0 on padding); else None.
    answer_set: torch.Tensor | None = None
    answer_weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def predicts_answer(self) -> torch.Tensor:
        """``[N]`` the input position whose logits predict the answer (``target_item - 1``:
        ``query_item`` for AR, the query-type token where one sits between query and answer)."""
        return self.positions["target_item"] - 1

    def subset(self, index: torch.Tensor) -> TokenTensors:
        """The rows at ``index`` (a LongTensor), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        pick = lambda t: t.index_select(0, index.to(t.device))  # noqa: E731
        return TokenTensors(
            input_ids=pick(self.input_ids),
            lengths=pick(self.lengths),
            positions={name: pick(p) for name, p in self.positions.items()},
            answer=pick(self.answer),
            query_type=self.query_type[index.cpu().numpy()],
            labels=pick(self.labels),
            answer_set=None if self.answer_set is None else pick(self.answer_set),
            answer_weights=None if self.answer_weights is None else pick(self.answer_weights),
        )

    def to(self, device: torch.device | str) -> TokenTensors:
        """A copy with every tensor on ``device``."""
        return TokenTensors(
            input_ids=self.input_ids.to(device),
            lengths=self.lengths.to(device),
            positions={name: p.to(device) for name, p in self.positions.items()},
            answer=self.answer.to(device),
            query_type=self.query_type,
            labels=self.labels.to(device),
            answer_set=None if self.answer_set is None else self.answer_set.to(device),
            answer_weights=None if self.answer_weights is None else self.answer_weights.to(device),
        )


def _flat_tokens(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The list column as (flat int64 token ids, int64 row lengths)."""
    arr = pa.array(column, type=pa.list_(pa.int32()))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets).astype(np.int64)
    flat = arr.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy().astype(np.int64)
    return flat, lengths


def _check_ids(name: str, ids: np.ndarray, rows: np.ndarray, vocab_size: int, source: str) -> None:
    """LanguageDataError naming the first example whose ``name`` ids leave ``[0, vocab_size)``."""
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    if len(bad):
        first = bad[0]
        raise LanguageDataError(
            f"{source}: {len(bad)} {name} id(s) outside the vocabulary [0, {vocab_size}) of its meta.json "
            f"(the first: id {int(ids[first])} in example {int(rows[first])}); the split was edited or "
            "does not belong to this meta.json"
        )


def _check_positions(df: pd.DataFrame, lengths: np.ndarray, source: str) -> None:
    """LanguageDataError naming the first example whose probe position is outside it."""
    for column in POSITION_COLUMNS:
        if column not in df:
            continue
        positions = df[column].to_numpy(np.int64)
        bad = np.flatnonzero((positions < 0) | (positions >= lengths))
        if len(bad):
            i = bad[0]
            raise LanguageDataError(
                f"{source}: {len(bad)} example(s) with a {column!r} position outside the example "
                f"(the first: example {int(i)}, position {int(positions[i])}, length {int(lengths[i])})"
            )


def to_tensors(df: pd.DataFrame, mask_nonquery: bool, vocab_size: int | None = None,
               source: str = "language split") -> TokenTensors:
    """Pad a split's ``tokens`` into tensors and build next-token labels.

    With ``mask_nonquery`` only the answer is a target (``labels[i, target_item - 1] = answer``);
    otherwise every position ``t`` with ``t + 1 < length`` is. With ``vocab_size`` every token and
    answer id must lie in ``[0, vocab_size)`` and every probe position inside its example, else a
    LanguageDataError that starts with ``source`` (what the rows were read from).
    """
    flat, lengths = _flat_tokens(df["tokens"])
    if vocab_size is not None:
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        _check_ids("token", flat, row_of, vocab_size, source)
        _check_ids("answer", df["answer"].to_numpy(np.int64), np.arange(len(df)), vocab_size, source)
        if "answer_set" in df:
            answers, sizes = _flat_tokens(df["answer_set"])
            _check_ids("answer_set", answers, np.repeat(np.arange(len(sizes)), sizes), vocab_size, source)
        _check_positions(df, lengths, source)
    rows = len(lengths)
    width = int(lengths.max()) if rows else 0
    valid = np.arange(width) < lengths[:, None]
    ids = np.full((rows, width), PAD, dtype=np.int64)
    ids[valid] = flat

    labels = np.full((rows, width), IGNORE_INDEX, dtype=np.int64)
    answer = df["answer"].to_numpy(np.int64)
    if mask_nonquery:
        if "target_item" not in df:
            raise ValueError("mask_nonquery needs a 'target_item' column to place the answer label")
        labels[np.arange(rows), df["target_item"].to_numpy(np.int64) - 1] = answer
    else:
        labels[:, :-1] = np.where(valid[:, 1:], ids[:, 1:], IGNORE_INDEX)

    answer_set = answer_weights = None
    if "answer_set" in df and "answer_counts" in df:
        answer_set, answer_weights = _target_distribution(df["answer_set"], df["answer_counts"])
    return TokenTensors(
        input_ids=torch.from_numpy(ids),
        lengths=torch.from_numpy(lengths),
        positions={c: torch.from_numpy(df[c].to_numpy(np.int64)) for c in POSITION_COLUMNS if c in df},
        answer=torch.from_numpy(answer),
        query_type=df["query_type"].to_numpy(dtype=object),
        labels=torch.from_numpy(labels),
        answer_set=answer_set,
        answer_weights=answer_weights,
    )


def _target_distribution(answer_set: pd.Series, answer_counts: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``[N, A]`` answer ids and their probabilities ``counts / sum(counts)``."""
    ids, sizes = _flat_tokens(answer_set)
    counts, count_sizes = _flat_tokens(answer_counts)
    if not np.array_equal(sizes, count_sizes):
        raise ValueError("answer_set and answer_counts differ in length for some example")
    width = int(sizes.max()) if len(sizes) else 0
    valid = np.arange(width) < sizes[:, None]
    padded_ids = np.full(valid.shape, PAD, dtype=np.int64)
    padded_ids[valid] = ids
    weights = np.zeros(valid.shape, dtype=np.float32)
    weights[valid] = counts
    totals = weights.sum(1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError("some example has no positive answer count")
    return torch.from_numpy(padded_ids), torch.from_numpy(weights / totals)


def load_tensors(language_dir: Path, split: str) -> TokenTensors:
    """Read one split of a language directory as tensors, masking as its config says. Ids
    outside the vocabulary of its ``meta.json`` (or probe positions outside their example) are
    a LanguageDataError naming the file and how to write it again."""
    meta = read_meta(language_dir)
    mask_nonquery = bool(meta.get("config", {}).get("mask_nonquery", False))
    df = read_split(language_dir, split, meta)  # a truncated or corrupt file: its own LanguageDataError
    try:
        return to_tensors(df, mask_nonquery, vocab_size=len(meta["vocabulary"]),
                          source=f"language split {Path(language_dir) / f'{split}.parquet'}")
    except LanguageDataError as err:
        raise LanguageDataError(f"{err}; {regenerate_hint(Path(language_dir))}") from None


def longest_example(language_dir: str | os.PathLike, meta: dict | None = None, splits: list[str] | None = None) -> int:
    """The longest example over ``splits`` (default: every split) of a generated language: the
    position table a model trained on it gets (so every split fits)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = read_meta(language_dir) if meta is None else meta
    longest = 0
    for split in list(meta["splits"]) if splits is None else splits:
        tokens = pq.read_table(checked_split_path(Path(language_dir), split, meta), columns=["tokens"])["tokens"]
        if len(tokens):
            longest = max(longest, int(pc.max(pc.list_value_length(tokens)).as_py() or 0))
    return longest
