"""pyvene behind one door: the only module that imports it.

pyvene finds a model's hook points in tables keyed by the model's type, so it knows nothing
about ``LanguageModel`` until told; importing this module tells it (``register_with_pyvene``).
After ``import tinylang.evaluation.pyvene_adapter`` (or using any of its names through
``tinylang.evaluation``), ``pyvene.IntervenableModel(config, model)`` works on any loaded
checkpoint with the components of ``COMPONENTS``. The import is slow (pyvene pulls in
transformers), which is why ``tinylang`` and ``tinylang.evaluation`` never import this module
themselves.
"""

from __future__ import annotations

import contextlib
import io

import torch

from tinylang.models.backbone import HOOK_POINTS, LanguageModel

with contextlib.redirect_stdout(io.StringIO()):  # pyvene prints a notice about nnsight on import
    import pyvene as pv
from pyvene.models.constants import CONST_INPUT_HOOK, CONST_OUTPUT_HOOK

COMPONENTS = tuple(HOOK_POINTS)
"""The hook-point names a pyvene config's ``component`` may take for a ``LanguageModel``
(the blocks of a model without a state mixer have no ``mlp_*``: ``model.components`` says which it has)."""


def module_mapping() -> dict[str, tuple[str, str]]:
    """Each component's module path (``%s`` for the layer) and pyvene hook (input or output)."""
    hook = {"input": CONST_INPUT_HOOK, "output": CONST_OUTPUT_HOOK}
    return {name: (path, hook[kind]) for name, (path, kind) in HOOK_POINTS.items()}


def register_with_pyvene() -> None:
    """Tell pyvene where ``LanguageModel``'s hook points are and how wide they are (idempotent)."""
    pv.type_to_module_mapping[LanguageModel] = module_mapping()
    pv.type_to_dimension_mapping[LanguageModel] = {name: ("d_model",) for name in COMPONENTS}


register_with_pyvene()


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


__all__ = ["COMPONENTS", "intervenable_model", "module_mapping", "patched_logits", "register_with_pyvene"]
