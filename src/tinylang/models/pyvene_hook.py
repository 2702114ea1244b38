"""``LanguageModel`` known to pyvene however the imports are ordered, without importing pyvene.

pyvene finds a model's hook points in tables keyed by the model's class, so a plain
``pyvene.IntervenableModel(config, model)`` needs ``LanguageModel`` in them. Importing pyvene
takes seconds (it pulls in transformers), so ``tinylang.models`` does not import it; instead
``install(LanguageModel)`` (run when ``tinylang.models.backbone`` is imported) registers at once if pyvene is already
loaded, and otherwise arranges for the registration to run right after pyvene's own import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

from .hooks import HOOK_POINTS

_MODELS: list[type] = []  # the classes to register: LanguageModel, given by install


def module_mapping() -> dict[str, tuple[str, str]]:
    """Each hook point's module path (``%s`` for the layer) and pyvene hook (input or output);
    call it once pyvene is loaded."""
    constants = importlib.import_module("pyvene.models.constants")
    hooks = {"input": constants.CONST_INPUT_HOOK, "output": constants.CONST_OUTPUT_HOOK}
    return {name: (path, hooks[kind]) for name, (path, kind) in HOOK_POINTS.items()}


def register(pyvene: ModuleType) -> None:
    """Tell pyvene where ``LanguageModel``'s hook points are and how wide they are (idempotent)."""
    for model in _MODELS:
        pyvene.type_to_module_mapping[model] = module_mapping()
        pyvene.type_to_dimension_mapping[model] = {name: ("d_model",) for name in HOOK_POINTS}


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds pyvene with the other finders, and registers once its module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "pyvene":
            return None
        sys.meta_path.remove(self)  # one import is enough; and find the real spec without us
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def run_and_register(module: ModuleType) -> None:
                run_module(module)
                register(module)

            spec.loader.exec_module = run_and_register
        return spec


def install(model: type) -> None:
    """Register ``model`` (``LanguageModel``) with pyvene now if it is loaded, else as soon as it is imported."""
    if model not in _MODELS:
        _MODELS.append(model)
    if "pyvene" in sys.modules and hasattr(sys.modules["pyvene"], "type_to_module_mapping"):
        register(sys.modules["pyvene"])
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
