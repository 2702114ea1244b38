"""pyvene behind one door: the only module that imports it.

``LanguageModel`` is registered with pyvene by ``tinylang.models.backbone`` (``pyvene_hook``, in
whichever order the two are imported), so ``pyvene.IntervenableModel(config, model)`` works on
any loaded checkpoint with the components of ``COMPONENTS``. This module holds the evaluators'
uses of pyvene. Its import is slow (pyvene pulls in transformers), which is why ``tinylang`` and
``tinylang.evaluation`` never import it themselves.
"""

from __future__ import annotations

import contextlib
import io

import torch

from tinylang.models import pyvene_hook
from tinylang.models.backbone import HOOK_POINTS, LanguageModel

with contextlib.redirect_stdout(io.StringIO()):  # pyvene prints a notice about nnsight on import
    import pyvene as pv

COMPONENTS = tuple(HOOK_POINTS)
"""The hook-point names a pyvene config's ``component`` may take for a ``LanguageModel``
(the blocks of a model without a state mixer have no ``mlp_*``: ``model.components`` says which it has)."""


module_mapping = pyvene_hook.module_mapping  # the registration itself is the hook's (on import of tinylang.models.backbone)


def intervenable_model(model: LanguageModel, layer: int, component: str) -> pv.IntervenableModel:
    """A pyvene model that can replace ``component``'s activation at ``layer``, one position per
    row (``unit: pos``). pyvene switches the wrapped model's ``requires_grad`` flags off;
    ``runtime.inference(model, restore_grad_flags=True)`` puts them back."""
    intervenable = pv.IntervenableModel({"layer": layer, "component": component, "unit": "pos"}, model)
    intervenable.disable_model_gradients()
    return intervenable


def patched_logits(intervenable: pv.IntervenableModel, input_ids: torch.Tensor, select: torch.Tensor,
                   positions: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """The model's logits at ``select`` (``model(input_ids, select=select)``) with row ``i``'s
    activation at ``positions[i]`` replaced by ``activations[i]`` (``[n]``, ``[n, d_model]``)."""
    where = [positions[:, None].tolist()]
    _, logits = intervenable({"input_ids": input_ids, "select": select},
                             unit_locations={"sources->base": (where, where)},
                             source_representations=activations[:, None])
    return logits


__all__ = ["COMPONENTS", "intervenable_model", "module_mapping", "patched_logits"]
