"""Evaluation: behaviour (loss, accuracy) and interchange interventions.

The interventions module imports pyvene (slow: it pulls in transformers), so it is
loaded only when one of its names is first used.
"""

from .attribution import attribution_summary, example_attributions
from .behaviour import evaluate_behaviour

_LAZY = {"corrupt", "run_interventions", "register_with_pyvene"}

__all__ = ["attribution_summary", "evaluate_behaviour", "example_attributions", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        from . import interventions

        return getattr(interventions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
