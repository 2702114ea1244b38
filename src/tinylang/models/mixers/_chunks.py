"""Splitting a sequence into equal chunks, for the chunked parallel forms (Based's linear
attention, DeltaNet's delta rule, Mamba-2's SSD).

A sequence of ``L`` tokens becomes ``n = ceil(L / chunk_size)`` chunks of ``chunk_size``
tokens, the last padded with zeros; a sequence no longer than one chunk is a single chunk of
its own length (no padding). Each caller makes sure its padding changes no result.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class ChunkLayout(NamedTuple):
    n_chunks: int
    size: int  # tokens per chunk
    pad: int  # zeros appended to the last chunk


def chunk_layout(length: int, chunk_size: int) -> ChunkLayout:
    """How ``length`` tokens split into chunks of at most ``chunk_size``."""
    n_chunks = max(1, -(-length // chunk_size))
    size = max(1, min(chunk_size, length)) if n_chunks == 1 else chunk_size
    return ChunkLayout(n_chunks, size, n_chunks * size - length)


def in_chunks(t: torch.Tensor, dim: int, layout: ChunkLayout) -> torch.Tensor:
    """``t`` with its time axis ``dim`` zero-padded and split into ``(n_chunks, size)``."""
    dim = dim % t.ndim
    if layout.pad:
        t = F.pad(t, (0, 0) * (t.ndim - 1 - dim) + (0, layout.pad))
    return t.unflatten(dim, (layout.n_chunks, layout.size))
