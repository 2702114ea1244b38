"""Evaluation of checkpoints: behaviour, interchange interventions, attention analysis, probes.

``evaluators.EVALUATORS`` maps the names a study's ``evaluators`` block uses to these analyses.

The interventions module imports pyvene (slow: it pulls in transformers) through
``pyvene_adapter``, so both are loaded only when one of their names is first used
(``LanguageModel`` is registered with pyvene by ``tinylang.models``, in either import order).
"""

from importlib import import_module

from .activations import capture_all
from .attention import attention_mass, attention_summary, has_attention
from .attribution import attribution_summary, example_attributions
from .behaviour import evaluate_behaviour
from .probes import run_probes
from .restoration import restoration_summary

_LAZY = {
    **dict.fromkeys(["RANDOM", "corrupt", "interchange", "kl_divergence", "patch_locations", "random_positions",
                     "run_interventions"], "interventions"),
    **dict.fromkeys(["intervenable_model"], "pyvene_adapter"),
}

__all__ = [
    "attention_mass", "attention_summary", "attribution_summary", "capture_all", "evaluate_behaviour",
    "example_attributions", "has_attention", "restoration_summary", "run_probes", *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
