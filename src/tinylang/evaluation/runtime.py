"""Running a model for analysis: the one way an evaluator puts a model in eval mode.

``inference`` is what every evaluator runs its forward passes in. It uses ``torch.no_grad``,
not ``torch.inference_mode``: evaluators hand activations back to callers (``collect``), who
may feed them to an autograd graph (a probe trained with gradients), and inference tensors
cannot be saved for backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
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


@contextmanager
def inference(model: nn.Module, restore_grad_flags: bool = False) -> Iterator[nn.Module]:
    """``eval_mode`` (same arguments) without gradients: the block an evaluator's forward passes run in."""
    with eval_mode(model, restore_grad_flags), torch.no_grad():
        yield model


__all__ = ["eval_mode", "inference"]
