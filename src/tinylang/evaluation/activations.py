"""Read activations at named hook points and probe positions (plain forward hooks, no pyvene).

``collect`` runs the model over a split in batches and keeps, for every requested
(layer, component) of ``HOOK_POINTS``, the activation vector at each requested probe
position of each example: the raw material for linear probes and similar read-outs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from tinylang.models.backbone import HOOK_POINTS, LanguageModel

from .batching import batches, trimmed
from .runtime import inference

Point = tuple[int, str]
"""A hook point: ``(layer, component)`` with ``component`` a key of ``HOOK_POINTS``."""


def hook_module(model: LanguageModel, layer: int, component: str) -> tuple[torch.nn.Module, str]:
    """The module behind ``(layer, component)`` and whether its ``"input"`` or ``"output"`` is meant."""
    if component not in HOOK_POINTS:
        raise ValueError(f"unknown component {component!r}; allowed: {', '.join(HOOK_POINTS)}")
    if not 0 <= layer < model.config.n_layers:
        raise ValueError(f"layer {layer} out of range for a model with {model.config.n_layers} layers")
    path, kind = HOOK_POINTS[component]
    try:
        module = model.get_submodule((path % layer).replace("[", ".").replace("]", ""))
    except AttributeError:  # e.g. ``mlp`` on blocks without a state mixer
        raise ValueError(f"this model has no {component!r} (available: {', '.join(model.components)})") from None
    return module, kind


@contextlib.contextmanager
def capture(model: LanguageModel, points: Sequence[Point], rows: torch.Tensor,
               pos: torch.Tensor) -> Iterator[dict[Point, torch.Tensor]]:
    """While active, each forward pass stores ``activation[rows, pos]`` of every point in the
    yielded dict, overwriting the last pass (``rows``, ``pos``: index tensors of one shape ``S``,
    e.g. ``(P, B)``, giving ``(*S, d_model)`` per point)."""
    store: dict[Point, torch.Tensor] = {}
    handles = []

    def saver(key: Point):
        def save(x) -> None:
            x = x[0] if isinstance(x, tuple) else x
            store[key] = x[rows, pos]
        return save

    try:
        for layer, component in points:
            module, kind = hook_module(model, layer, component)
            save = saver((layer, component))
            if kind == "input":
                handles.append(module.register_forward_pre_hook(lambda m, args, save=save: save(args[0])))
            else:
                handles.append(module.register_forward_hook(lambda m, args, out, save=save: save(out)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def capture_all(model: LanguageModel, input_ids: torch.Tensor) -> dict[Point, torch.Tensor]:
    """Every hook point's activation over a batch, for one's own analyses: ``{(layer,
    component): Tensor (batch, length, d_model)}`` for each layer and each component the model
    has (``model.components``), from one forward pass in eval mode without gradients."""
    points = [(layer, component) for layer in range(model.config.n_layers) for component in model.components]
    ids = input_ids.to(model.device)
    batch, length = ids.shape
    rows = torch.arange(batch, device=ids.device)[:, None].expand(batch, length)
    pos = torch.arange(length, device=ids.device)[None].expand(batch, length)
    with inference(model), capture(model, points, rows, pos) as store:
        model(ids)
        return dict(store)


def collect(model: LanguageModel, tensors, points: Sequence[Point], positions: Sequence[str],
            batch_size: int = 256) -> dict[Point, torch.Tensor]:
    """Activations at every ``(layer, component)`` of ``points`` and every probe position of
    ``positions`` (names of ``tensors.positions``).

    Returns ``{(layer, component): Tensor (P, N, d_model)}``, float32 on the CPU, where
    ``[p, i]`` is example ``i``'s activation at ``tensors.positions[positions[p]][i]``. One
    forward pass per batch serves all points; the model runs in eval mode (its previous mode
    is restored afterwards) and without gradients.
    """
    points = [(int(layer), component) for layer, component in points]
    positions = list(positions)
    missing = [name for name in positions if name not in tensors.positions]
    if missing:
        raise ValueError(f"unknown probe position(s) {missing}; this split has {list(tensors.positions)}")
    index = torch.stack([tensors.positions[name] for name in positions]) if positions else \
        torch.zeros(0, len(tensors), dtype=torch.long)  # (P, N)
    if len(tensors) and positions:
        bad = (index < 0) | (index >= tensors.lengths[None])
        if bad.any():
            p, i = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"position {positions[p]!r} of example {i} is {int(index[p, i])}, "
                             f"outside its sequence (length {int(tensors.lengths[i])})")
    for layer, component in points:
        hook_module(model, layer, component)  # validate before running anything

    device = model.device
    parts: dict[Point, list[torch.Tensor]] = {point: [] for point in points}
    with inference(model):
        for idx in batches(len(tensors), batch_size):
            ids = trimmed(tensors.input_ids[idx], tensors.lengths[idx]).to(device)
            pos = index[:, idx].to(device)
            rows = torch.arange(ids.shape[0], device=device)[None].expand_as(pos)
            with capture(model, points, rows, pos) as store:
                model(ids)
            for point in points:
                parts[point].append(store[point].float().cpu())
    d_model = model.config.d_model
    return {point: torch.cat(chunks, dim=1) if chunks else torch.zeros(len(positions), 0, d_model)
            for point, chunks in parts.items()}
