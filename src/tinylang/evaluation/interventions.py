"""Interchange interventions (activation patching) with pyvene.

For each corrupted item, the model runs on the corrupted input (the *base*) while the
clean run's activation (the *source*) is patched in at one (layer, component, position);
we read the clean answer's probability and logit at the position that predicts it
(``target_item - 1``: ``query_item`` for AR).
"""

from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tinylang.models.backbone import HOOK_POINTS, LanguageModel

from .behaviour import answer_scores, batches, query_logits, select_mask, trimmed

with contextlib.redirect_stdout(io.StringIO()):  # pyvene prints a notice about nnsight on import
    import pyvene as pv
from pyvene.models.constants import CONST_INPUT_HOOK, CONST_OUTPUT_HOOK

REFERENCE_METRICS = ("p_clean", "p_corrupted", "logit_clean", "logit_corrupted")
PATCH_METRICS = ("p_patched", "logit_patched", "p_diff", "logit_diff")
COLUMNS = ["example", "query_type", "corrupted", "layer", "component", "position", "metric", "value"]


def register_with_pyvene() -> None:
    """Tell pyvene where ``LanguageModel``'s hook points are and how wide they are."""
    hook = {"input": CONST_INPUT_HOOK, "output": CONST_OUTPUT_HOOK}
    pv.type_to_module_mapping[LanguageModel] = {
        name: (path, hook[kind]) for name, (path, kind) in HOOK_POINTS.items()
    }
    pv.type_to_dimension_mapping[LanguageModel] = {name: ("d_model",) for name in HOOK_POINTS}


register_with_pyvene()


def corrupt(tensors, item: str, token_classes: dict[str, Sequence[int]], seed: int) -> torch.Tensor:
    """``input_ids`` with the token at ``positions[item]`` replaced, per example, by a random
    token of the same class that occurs nowhere in that example (seeded, vectorised)."""
    ids = tensors.input_ids
    rows = torch.arange(len(ids))
    original = ids[rows, tensors.positions[item]]
    bounds = torch.tensor([list(r) for r in token_classes.values()], dtype=torch.long)  # (K, 2)
    member = (original[:, None] >= bounds[:, 0]) & (original[:, None] < bounds[:, 1])
    if not member.any(1).all():
        bad = original[~member.any(1)].unique().tolist()
        raise ValueError(f"{item}: token(s) {bad} belong to no class of {list(token_classes)}")
    start, stop = bounds[member.int().argmax(1)].unbind(1)
    size = stop - start
    # present[n, j]: token start[n] + j occurs in example n (column size.max() collects the rest).
    offset = ids - start[:, None]
    offset = torch.where((offset >= 0) & (offset < size[:, None]), offset, size.max())
    present = torch.zeros(len(ids), int(size.max()) + 1, dtype=torch.bool).scatter_(1, offset, True)
    candidates = (torch.arange(int(size.max()))[None] < size[:, None]) & ~present[:, :-1]
    if not candidates.any(1).all():
        raise ValueError(f"{item}: some example already uses every token of its class")
    score = torch.rand(candidates.shape, generator=torch.Generator().manual_seed(seed))
    choice = score.masked_fill(~candidates, -1.0).argmax(1)
    out = ids.clone()
    out[rows, tensors.positions[item]] = start + choice
    return out


@contextlib.contextmanager
def _captured(model: LanguageModel, points: list[tuple[int, str]], rows: torch.Tensor, pos: torch.Tensor):
    """While active, a forward pass stores ``activation[rows, pos]`` of every hook point."""
    store: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for layer, component in points:
        path, kind = HOOK_POINTS[component]
        module = model.get_submodule((path % layer).replace("[", ".").replace("]", ""))
        save = lambda x, key=(layer, component): store.__setitem__(key, x[rows, pos])  # noqa: E731
        if kind == "input":
            handles.append(module.register_forward_pre_hook(lambda m, args, save=save: save(args[0])))
        else:
            handles.append(module.register_forward_hook(lambda m, args, out, save=save: save(out)))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def run_interventions(
    model: LanguageModel,
    tensors,
    token_classes: dict[str, Sequence[int]],
    corrupt_items: Sequence[str] = ("query_item_orig", "target_item_orig"),
    positions: Sequence[str] | None = None,
    components: Sequence[str] | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> pd.DataFrame:
    """Patch clean activations into corrupted runs at every layer × component × position.

    Returns a long DataFrame with columns ``example, query_type, corrupted, layer,
    component, position, metric, value``:

    * one row per (example, corrupted, layer, component, position) and metric
      ``p_patched``, ``logit_patched`` (the clean answer's probability / logit at
      ``query_item`` after patching), ``p_diff = p_patched - p_corrupted`` and
      ``logit_diff = logit_patched - logit_corrupted``;
    * one reference row per (example, corrupted) and metric ``p_clean``, ``p_corrupted``,
      ``logit_clean``, ``logit_corrupted``, with ``layer = -1``, ``component = "none"``,
      ``position = "none"`` (they do not depend on where one patches).

    A heatmap is one groupby away, e.g.
    ``df[df.metric == "p_diff"].groupby(["corrupted", "layer", "component", "position"]).value.mean()``.
    Source and base share the position; corruption ``i`` of ``corrupt_items`` uses seed ``seed + i``.
    """
    positions = list(positions or tensors.positions)
    components = list(components or model.components)
    missing = [c for c in components if c not in model.components]
    if missing:
        raise ValueError(f"model has no component(s) {missing}; it has {model.components}")
    layers = range(model.config.n_layers)
    points = [(layer, c) for layer in layers for c in components]
    device, n, n_pos = model.device, len(tensors), len(positions)

    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    intervenables = {}
    for point in points:  # one IntervenableModel per (layer, component), reused for every batch
        layer, component = point
        intervenable = pv.IntervenableModel({"layer": layer, "component": component, "unit": "pos"}, model)
        intervenable.disable_model_gradients()
        intervenables[point] = intervenable

    reference = torch.zeros(len(corrupt_items), len(REFERENCE_METRICS), n)
    patched = torch.zeros(len(corrupt_items), 2, len(layers), len(components), n_pos, n)  # p, logit
    try:
        for i, item in enumerate(corrupt_items):
            corrupted_ids = corrupt(tensors, item, token_classes, seed + i)
            for idx in batches(n, batch_size):
                clean = trimmed(tensors.input_ids[idx], tensors.lengths[idx]).to(device)
                base = corrupted_ids[idx, : clean.shape[1]].to(device)
                query = tensors.predicts_answer[idx].to(device)
                answer = tensors.answer[idx].to(device)
                b = len(clean)
                # The P position-variants of the batch, stacked position-major: row p * b + j.
                rows = torch.arange(b, device=device).repeat(n_pos)
                pos = torch.stack([tensors.positions[p][idx] for p in positions]).to(device).reshape(-1)

                with _captured(model, points, rows, pos) as source:
                    clean_logits = query_logits(model, clean, query)
                logp_clean, logit_clean = answer_scores(clean_logits, answer)
                logp_corr, logit_corr = answer_scores(query_logits(model, base, query), answer)
                reference[i, :, idx] = torch.stack(
                    [logp_clean.exp(), logp_corr.exp(), logit_clean, logit_corr]).cpu()

                inputs = {"input_ids": base[rows], "select": select_mask(base, query)[rows]}
                locations = pos.view(-1, 1).tolist()
                for (layer, component), intervenable in intervenables.items():
                    _, logits = intervenable(
                        inputs,
                        unit_locations={"sources->base": ([locations], [locations])},
                        source_representations=source[layer, component].unsqueeze(1),
                    )
                    logp, logit = answer_scores(logits, answer[rows])
                    c = components.index(component)
                    patched[i, 0, layer, c, :, idx] = logp.exp().view(n_pos, b).cpu()
                    patched[i, 1, layer, c, :, idx] = logit.view(n_pos, b).cpu()
    finally:
        model.train(was_training)
        for param, flag in zip(model.parameters(), grad_flags):
            param.requires_grad_(flag)

    diffs = patched - reference[:, [1, 3]][:, :, None, None, None, :]  # minus p / logit corrupted
    return _tidy(torch.cat([patched, diffs], 1).numpy(), reference.numpy(), tensors.query_type,
                 list(corrupt_items), list(layers), components, positions)


def _tidy(patched: np.ndarray, reference: np.ndarray, query_type, items, layers, components, positions):
    """Long DataFrame from ``patched`` (I, M, layer, C, P, N) and ``reference`` (I, M, N)."""
    query_type = np.asarray(query_type, dtype=object)

    def frame(values: np.ndarray, axes: list[tuple[str, list]]) -> pd.DataFrame:
        grids = np.meshgrid(*[np.arange(len(labels)) for _, labels in axes], indexing="ij")
        columns = {name: np.asarray(labels, dtype=object if name != "layer" else int)[grid.ravel()]
                   for (name, labels), grid in zip(axes, grids)}
        columns["query_type"] = query_type[columns["example"].astype(int)]
        columns["value"] = values.ravel()
        return pd.DataFrame(columns)

    n = range(len(query_type))
    patch = frame(patched, [("corrupted", items), ("metric", list(PATCH_METRICS)), ("layer", layers),
                            ("component", components), ("position", positions), ("example", list(n))])
    ref = frame(reference, [("corrupted", items), ("metric", list(REFERENCE_METRICS)), ("example", list(n))])
    ref["layer"], ref["component"], ref["position"] = -1, "none", "none"
    df = pd.concat([ref, patch], ignore_index=True)[COLUMNS]
    df["example"] = df["example"].astype(int)
    return df
