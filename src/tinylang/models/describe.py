"""What a model is made of: parameter counts, recurrent state size and hook points."""

from __future__ import annotations

import pandas as pd
import torch

from .backbone import HOOK_POINTS, LanguageModel
from .mixers import has_recurrence


def recurrent_state_size(mixer: torch.nn.Module) -> int | None:
    """Numbers a mixer carries from one token to the next for one sequence, or None for
    mixers without a fixed-size state (attention's cache grows with the sequence)."""
    if not has_recurrence(mixer):
        return None
    state = mixer.initial_state(1)
    tensors = state if isinstance(state, (tuple, list)) else [state]
    total = 0
    for t in tensors:
        total += t.numel() * (2 if t.is_complex() else 1)
    return total


def describe_model(model: LanguageModel) -> pd.DataFrame:
    """One row per part (embeddings, each layer's mixer and MLP, head): its parameters and,
    for mixers, the recurrent state size."""
    rows = []

    def count(module: torch.nn.Module | None) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    rows.append({"part": "embed", "layer": None, "parameters": count(model.embed), "state_size": None})
    if model.pos_embed is not None:
        rows.append({"part": "pos_embed", "layer": None, "parameters": count(model.pos_embed), "state_size": None})
    for i, block in enumerate(model.layers):
        norms = count(block.norm1) + count(block.norm2)
        rows.append({"part": f"mixer ({model.model_config.mixer})", "layer": i, "parameters": count(block.mixer),
                     "state_size": recurrent_state_size(block.mixer)})
        if block.mlp is not None:
            rows.append({"part": f"mlp ({model.model_config.state_mixer})", "layer": i,
                         "parameters": count(block.mlp), "state_size": None})
        rows.append({"part": "norms", "layer": i, "parameters": norms, "state_size": None})
    head = 0 if model.model_config.tie_embeddings else count(model.lm_head)
    rows.append({"part": "norm_f + lm_head", "layer": None, "parameters": count(model.norm_f) + head,
                 "state_size": None})
    return pd.DataFrame(rows).astype({"layer": "Int64", "state_size": "Int64"})


def format_description(model: LanguageModel) -> str:
    """A human-readable summary: the parts table, totals and the hook points."""
    table = describe_model(model)
    total = sum(p.numel() for p in model.parameters())
    mixers = table[table.part.str.startswith("mixer")]
    state = mixers.state_size.sum() if mixers.state_size.notna().all() else None
    lines = [
        f"{model.model_config.mixer}: d_model {model.config.d_model}, {model.config.n_layers} layers, "
        f"vocabulary {model.config.vocab_size}, max_len {model.config.max_len}",
        table.astype(object).where(table.notna(), "-").to_string(index=False),
        f"parameters: {total:,} ({int(mixers.parameters.sum()):,} in mixers)",
        "recurrent state per sequence: "
        + (f"{int(state):,} numbers" if state is not None else "grows with the sequence (attention cache)"),
        "hook points: " + ", ".join(f"{c} ({HOOK_POINTS[c][0] % 'i'} {HOOK_POINTS[c][1]})" for c in model.components),
    ]
    return "\n".join(lines)
