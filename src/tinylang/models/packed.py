"""Models of one architecture stacked along a leading run axis: one forward pass for K runs.

The runs of a sweep that differ only in learning rate and seed share every shape, so their
parameters stack (``torch.func.stack_module_state``) and one ``torch.func.vmap`` of the
model's forward computes all of them: a few large kernels instead of K small ones, which is
what a tiny model on a CPU core or a GPU is short of. The stacked parameters are ordinary
leaf tensors ``[K, ...]``: ``losses.sum().backward()`` gives each run its own gradient (the
runs share nothing), and an optimiser steps them like any other parameters.

Every built-in mixer runs packed; Mamba's hand-written scan folds the runs into its batch
(``_SelectiveScan.vmap``). The backward is ordinary autograd, not a transform, so a mixer's
custom backward need not be batchable.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel


class PackedModels:
    """``K`` models of one architecture as stacked tensors (``params``, ``buffers``: name →
    ``[K, ...]``), called on ``[K, batch, length]`` token ids for ``[K, batch, length, vocab]``
    logits."""

    def __init__(self, models: Sequence[nn.Module]):
        if not models:
            raise ValueError("PackedModels needs at least one model")
        shapes = {tuple((name, p.shape) for name, p in m.state_dict().items()) for m in models}
        if len(shapes) != 1:
            raise ValueError("packed models must share one architecture: their parameters differ in names or shapes")
        self.params, self.buffers = stack_module_state(list(models))
        # Only its structure is used: functional_call swaps in the stacked tensors on each call.
        self.base = copy.deepcopy(models[0])

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[0] != len(self):
            raise ValueError(f"input_ids has {input_ids.shape[0]} runs on its first axis, the pack {len(self)}")
        # The fused attention kernels have no vmap rule (vmap would loop over the runs); the math
        # one is made of batchable operations.
        with sdpa_kernel(SDPBackend.MATH):
            return vmap(self._one)(self.params, self.buffers, input_ids)

    def _one(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
             input_ids: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (input_ids,))

    def unpack(self) -> list[nn.Module]:
        """The ``K`` models, each an independent copy holding its run's slice of the tensors."""
        models = [copy.deepcopy(self.base) for _ in range(len(self))]
        for k, model in enumerate(models):
            self.copy_into(model, k)
        return models

    @torch.no_grad()
    def copy_into(self, model: nn.Module, k: int) -> None:
        """Run ``k``'s slice of every stacked parameter and buffer into ``model`` (of this architecture)."""
        for name, tensor in self.params.items():
            model.get_parameter(name).copy_(tensor[k])
        for name, tensor in self.buffers.items():
            model.get_buffer(name).copy_(tensor[k])


def packing_problem(model: nn.Module) -> str | None:
    """Why ``model``'s architecture cannot run packed (an operation without a ``vmap`` rule, such
    as ``torch.nn.LSTM``'s), found by a packed forward of two copies on two tokens; None if it can."""
    ids = torch.zeros(2, 1, 2, dtype=torch.long, device=next(model.parameters()).device)
    try:
        with torch.no_grad():
            PackedModels([model, model])(ids)
    except (RuntimeError, NotImplementedError) as err:
        config = getattr(model, "model_config", None)
        what = f"mixer {config.mixer!r}" if config is not None else type(model).__name__
        return f"{what} cannot run under torch.func.vmap ({str(err).splitlines()[0]})"
    return None


__all__ = ["PackedModels", "packing_problem"]
