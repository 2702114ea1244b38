"""Running a model for analysis: the one way an evaluator puts a model in eval mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module, restore_grad_flags: bool = False) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, its mode restored afterwards however the block
    ends; with ``restore_grad_flags`` also every parameter's ``requires_grad`` (pyvene's
    intervenable models switch them off)."""
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()] if restore_grad_flags else []
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
        for param, flag in zip(model.parameters(), grad_flags):
            param.requires_grad_(flag)


__all__ = ["eval_mode"]
