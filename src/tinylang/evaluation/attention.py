"""Attention analysis: how much softmax attention flows between the probe positions.

For every example, layer with attention, head, and pair of probe positions ``(from, to)`` the
table holds ``probs[from, to]``: the attention probability that the query at ``from`` puts on
the key at ``to``. A ``to_position == "other"`` row holds the mass on every position that is
neither a probe position nor a requested to-position, so with the default to-positions the
masses read from one position sum to 1 over its to-rows (when the example's probe positions
are distinct; where two coincide, as can happen in ATR, each row reports the full probability
of the shared position and the sum exceeds 1).

Pairs with ``to`` after ``from`` are kept: causality makes them exactly 0, and keeping them
gives every ``(example, layer, head, from)`` the same set of to-rows (a rectangular table whose
zeros are facts, e.g. "the query cannot see the answer"). Probe positions an example lacks
(an index outside ``[0, length)``) give NaN rows.

In AR the answer is predicted from ``query_item``, so the induction signature is a large mass
from ``query_item`` to ``target_item_orig`` (the value in context) in the last layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from tinylang.models.mixers import stores_attention

from .batching import batches, select_mask, trimmed
from .runtime import inference

PREDICTS_ANSWER = "predicts_answer"
"""From-position name of the answer-predicting position, added when no probe position is it."""
OTHER = "other"
"""To-position name of the mass on all remaining positions."""
SCHEMA = {"example": "int64", "query_type": "str", "layer": "int64", "head": "int64", "from_position": "str",
          "to_position": "str", "value": "float32"}
"""The table's columns and their pandas dtypes."""
COLUMNS = list(SCHEMA)


def attention_layers(model) -> list[int]:
    """Indices of the layers whose mixer can store attention probabilities (an ``AttentionMixer``)."""
    return [i for i, layer in enumerate(model.layers) if stores_attention(layer.mixer)]


def has_attention(model) -> bool:
    """Whether any layer's mixer exposes attention probabilities."""
    return bool(attention_layers(model))


@contextmanager
def storing_attention(model, layers: Sequence[int]) -> Iterator[None]:
    """``inference`` with ``store_attention`` on in ``layers``; flags, mode and memory restored on exit."""
    mixers = [model.layers[i].mixer for i in layers]
    flags = [m.store_attention for m in mixers]
    with inference(model):
        try:
            for m in mixers:
                m.store_attention = True
            yield
        finally:
            for m, flag in zip(mixers, flags):
                m.store_attention = flag
                m.attention_probs = None


def _mixer_name(model) -> str:
    config = getattr(model, "model_config", None)
    name = getattr(config, "mixer", None)
    kind = type(model.layers[0].mixer).__name__ if len(model.layers) else "none"
    return f"{name!r} ({kind})" if name else kind


def _positions(tensors, from_positions, to_positions) -> tuple[list[str], list[str], dict[str, torch.Tensor]]:
    """The from- and to-position names and every named position as an ``[N]`` index."""
    probes = dict(tensors.positions)
    answer_pos = tensors.predicts_answer
    coincides = any(torch.equal(p, answer_pos) for p in probes.values())
    named = {**probes, PREDICTS_ANSWER: answer_pos}
    if from_positions is None:
        from_positions = list(probes) + ([] if coincides else [PREDICTS_ANSWER])
    if to_positions is None:
        to_positions = list(probes)
    for kind, names in (("from", from_positions), ("to", to_positions)):
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"unknown {kind}-positions {unknown}; available: {sorted(named)}")
        if len(set(names)) != len(names):
            raise ValueError(f"repeated {kind}-positions in {list(names)}")
    if OTHER in to_positions:
        raise ValueError(f"{OTHER!r} is always added; do not request it")
    return list(from_positions), list(to_positions), named


def _stack(named: dict[str, torch.Tensor], names: list[str], idx: slice, device) -> torch.Tensor:
    """``[B, len(names)]``: the named positions of the batch's rows."""
    return torch.stack([named[k][idx] for k in names], 1).to(device)


def attention_mass(model, tensors, from_positions: Sequence[str] | None = None,
                   to_positions: Sequence[str] | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Attention mass per example, layer, head and ``(from, to)`` probe-position pair.

    ``from_positions`` default to every probe position of ``tensors`` plus ``"predicts_answer"``
    (``target_item - 1``) where no probe position is it (ATR with a query-type token);
    ``to_positions`` default to every probe position. Each ``(example, layer, head, from)`` gets
    one row per to-position and an ``"other"`` row (see the module docstring).

    Returns the tidy table ``example, query_type, layer, head, from_position, to_position, value``
    (``example`` indexes ``tensors``). Layers without attention are absent; a model with none at
    all raises ``ValueError``.
    """
    layers = attention_layers(model)
    if not layers:
        raise ValueError(f"model has no attention probabilities to analyse: its mixer {_mixer_name(model)} "
                         "has no `store_attention`")
    from_names, to_names, named = _positions(tensors, from_positions, to_positions)
    # Positions whose mass is never "other": all probe positions and the requested to-positions.
    excluded_names = list(dict.fromkeys([*tensors.positions, *to_names]))
    device = model.device
    n = len(tensors)
    chunks: list[torch.Tensor] = []  # per batch: [B, layers, H, F, T + 1]
    with storing_attention(model, layers):
        for idx in batches(n, batch_size):
            lengths = tensors.lengths[idx].to(device)
            ids = trimmed(tensors.input_ids[idx], tensors.lengths[idx]).to(device)
            width = ids.shape[1]
            src, dst, excl = (_stack(named, names, idx, device)  # [B, F], [B, T], [B, E]
                              for names in (from_names, to_names, excluded_names))
            src_ok = (src >= 0) & (src < lengths[:, None])
            dst_ok = (dst >= 0) & (dst < lengths[:, None])
            excl = torch.where((excl >= 0) & (excl < lengths[:, None]), excl, width)  # absent → dropped
            is_probe = torch.zeros(len(ids), width + 1, dtype=torch.bool, device=device)
            is_probe.scatter_(1, excl, True)
            is_other = ~is_probe[:, :width]  # [B, L]; padding is causally invisible from real rows

            model(ids, select=select_mask(ids, tensors.predicts_answer[idx].to(device)))
            per_layer = [_layer_mass(model, i, src, dst, src_ok, dst_ok, is_other) for i in layers]
            if len({p.shape[1] for p in per_layer}) > 1:
                raise ValueError("layers with different numbers of heads are not supported")
            chunks.append(torch.stack(per_layer, 1).cpu())
    if not chunks:
        return pd.DataFrame(columns=COLUMNS)
    return _tidy(torch.cat(chunks).numpy(), tensors, layers, from_names, to_names)


def _layer_mass(model, i: int, src, dst, src_ok, dst_ok, is_other) -> torch.Tensor:
    """Layer ``i``'s attention mass [B, H, F, T + 1] from each from-position to each
    to-position and to the rest ("other"); NaN where either position is absent."""
    probs = model.layers[i].mixer.attention_probs
    if probs is None:
        raise RuntimeError(f"layer {i}'s mixer stored no attention probabilities")
    (b, heads), n_from, width, n_to = probs.shape[:2], src.shape[1], is_other.shape[1], dst.shape[1] + 1
    rows_idx = src.clamp(0, width - 1)[:, None, :, None].expand(b, heads, n_from, width)
    rows = probs.gather(2, rows_idx)  # [B, H, F, L]
    cols_idx = dst.clamp(0, width - 1)[:, None, None, :].expand(b, heads, n_from, n_to - 1)
    mass = torch.cat([rows.gather(3, cols_idx), (rows * is_other[:, None, None, :]).sum(-1, keepdim=True)], -1)
    valid = src_ok[:, None, :, None] & torch.cat([dst_ok, src_ok.new_ones(b, 1)], 1)[:, None, None, :]
    return mass.float().masked_fill(~valid, float("nan"))


def _tidy(values: np.ndarray, tensors, layers: list[int], from_names: list[str], to_names: list[str]) -> pd.DataFrame:
    """The [N, layers, H, F, T] mass array as the tidy table."""
    grid = np.indices(values.shape).reshape(5, -1)
    to_labels = np.array([*to_names, OTHER], dtype=object)
    return pd.DataFrame({
        "example": grid[0],
        "query_type": np.asarray(tensors.query_type, dtype=object)[grid[0]],
        "layer": np.asarray(layers)[grid[1]],
        "head": grid[2],
        "from_position": np.array(from_names, dtype=object)[grid[3]],
        "to_position": to_labels[grid[4]],
        "value": values.reshape(-1),
    })


def attention_summary(table: pd.DataFrame, by_query_type: bool = False) -> pd.DataFrame:
    """Mean, quartiles (``q25``, ``q75``: the interquartile range) and example count ``n`` of the
    attention mass per ``(layer, head, from_position, to_position)`` (also per ``query_type`` with
    ``by_query_type``), keeping ``run``/``step`` columns where present. NaN values are skipped.

    Tidy: the group columns, ``statistic`` and ``value``.
    """
    keys = [c for c in ("run", "step") if c in table.columns]
    keys += (["query_type"] if by_query_type else []) + ["layer", "head", "from_position", "to_position"]
    grouped = table.groupby(keys, sort=True)["value"]
    stats = pd.DataFrame({
        "mean": grouped.mean(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75),
        "n": grouped.count().astype(float),
    })
    return (stats.reset_index().melt(id_vars=keys, var_name="statistic", value_name="value")
            .sort_values([*keys, "statistic"], kind="stable").reset_index(drop=True))
