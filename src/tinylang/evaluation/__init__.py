"""Evaluation of checkpoints: behaviour, interchange interventions, attention analysis, probes.

``evaluators.EVALUATORS`` maps the names a study's ``evaluators`` block uses to these analyses.

Every name loads its module on first use: the pandas-only modules (``attribution``,
``restoration``) are read by the figure and aggregation jobs, which then never import torch,
and the interventions module imports pyvene (slow: it pulls in transformers) through
``pyvene_adapter`` (``LanguageModel`` is registered with pyvene by ``tinylang.models.backbone``, in either
import order).
"""

from tinylang.lazy import lazy_attributes

_LAZY = {
    "capture_all": "activations",
    **dict.fromkeys(["attention_mass", "attention_summary", "has_attention"], "attention"),
    **dict.fromkeys(["attribution_summary", "example_attributions"], "attribution"),
    "evaluate_behaviour": "behaviour",
    "run_probes": "probes",
    "restoration_summary": "restoration",
    **dict.fromkeys(["RANDOM", "corrupt", "interchange", "kl_divergence", "patch_locations", "random_positions",
                     "run_interventions"], "interventions"),
    **dict.fromkeys(["intervenable_model"], "pyvene_adapter"),
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)
