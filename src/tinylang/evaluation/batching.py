"""Running a model over a split in batches: the slices, the trimmed inputs, the read-out mask."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def trimmed(input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``input_ids`` without the padding columns no row of this batch needs."""
    return input_ids[:, : int(lengths.max())]


def select_mask(input_ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, L)`` mask, True at one position per row (for ``model(select=...)``)."""
    mask = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    mask[torch.arange(len(pos), device=pos.device), pos] = True
    return mask


__all__ = ["batches", "select_mask", "trimmed"]
