"""Evaluation of checkpoints: behaviour, interchange interventions, attention analysis, probes.

``evaluators.EVALUATORS`` maps the names a study's ``evaluators`` block uses to these analyses.

The interventions module imports pyvene (slow: it pulls in transformers), so it is
loaded only when one of its names is first used.
"""

from .attention import attention_mass, attention_summary, has_attention
from .attribution import attribution_summary, example_attributions
from .behaviour import evaluate_behaviour
from .probes import run_probes
from .restoration import restoration_summary

_LAZY = {"RANDOM", "corrupt", "interchange", "kl_divergence", "patch_locations", "random_positions",
         "register_with_pyvene", "run_interventions"}

__all__ = [
    "attention_mass", "attention_summary", "attribution_summary", "evaluate_behaviour", "example_attributions",
    "has_attention", "restoration_summary", "run_probes", *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        from . import interventions

        return getattr(interventions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
