"""Interchange interventions (activation patching) with pyvene.

For each corrupted item, the model runs on the corrupted input (the *base*) while the
clean run's activation (the *source*) is patched in at one (layer, component, position);
we read the clean answer's probability and logit, and the whole next-token distribution,
at the position that predicts the answer (``target_item - 1``: ``query_item`` for AR).

``interchange`` is the machinery: any source, any stack of bases, any per-example patch
locations. ``run_interventions`` is the analysis built on it: clean source, corrupted bases,
every layer × component × probe position (plus a random control position), as a long table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tinylang.models.backbone import LanguageModel
from tinylang.progress import Progress

from .activations import capture
from .batching import batches, select_mask
from .behaviour import query_logits
from .pyvene_adapter import intervenable_model, patched_logits
from .runtime import inference

log = logging.getLogger("tinylang.evaluation")

REFERENCE_METRICS = ("p_clean", "p_corrupted", "logit_clean", "logit_corrupted", "kl_clean_corrupted")
PATCH_METRICS = ("p_patched", "logit_patched", "p_diff", "logit_diff", "kl_patched_corrupted")
SCHEMA = {"example": "int64", "query_type": "str", "corrupted": "str", "layer": "int64", "component": "str",
          "position": "str", "metric": "str", "value": "float32"}
"""The table's columns and their pandas dtypes."""
COLUMNS = list(SCHEMA)

RANDOM = "random"
"""Name of the control position: per example, a seeded uniformly random position before the
answer-predicting one that is no probe position (see ``random_positions``)."""


CORRUPTIONS = ("paper", "unused")
"""How ``corrupt`` draws the replacement token (see there)."""


def corrupt(tensors, item: str, token_classes: dict[str, Sequence[int]], seed: int,
            rule: str = "paper") -> torch.Tensor:
    """``input_ids`` with the token at ``positions[item]`` replaced, per example, by a seeded
    random token.

    ``paper`` (the paper's code): any token of the query item's class range (e.g. the keys for
    AR key queries, the terminals for ATR) other than the original one; it may occur elsewhere
    in the example. Where the replaced token lies outside that range (AR's target value), the
    original draws from the range less its last token, and so does this. ``unused``: a token of
    the replaced token's own class that occurs nowhere in the example (an error where none is left).
    """
    if rule not in CORRUPTIONS:
        raise ValueError(f"unknown corruption rule {rule!r}; allowed: {', '.join(CORRUPTIONS)}")
    ids = tensors.input_ids
    rows = torch.arange(len(ids))
    original = ids[rows, tensors.positions[item]]
    class_of = "query_item_orig" if rule == "paper" else item
    start, stop = _class_bounds(ids[rows, tensors.positions[class_of]], token_classes, class_of)
    size = stop - start
    offset = original - start
    inside = (offset >= 0) & (offset < size)
    if rule == "paper":
        candidates = torch.arange(int(size.max()))[None] < torch.where(inside, size, size - 1)[:, None]
        candidates[rows[inside], offset[inside]] = False
    else:
        candidates = _unused_tokens(ids, start, size)
    if not candidates.any(1).all():
        raise ValueError(f"{item}: some example has no token left to corrupt it with (rule {rule!r})")
    score = torch.rand(candidates.shape, generator=torch.Generator().manual_seed(seed))
    choice = score.masked_fill(~candidates, -1.0).argmax(1)
    out = ids.clone()
    out[rows, tensors.positions[item]] = start + choice
    return out


def _class_bounds(tokens: torch.Tensor, token_classes: dict[str, Sequence[int]], item: str):
    """Per token, the ``[start, stop)`` id range of its class."""
    bounds = torch.tensor([list(r) for r in token_classes.values()], dtype=torch.long)  # (K, 2)
    member = (tokens[:, None] >= bounds[:, 0]) & (tokens[:, None] < bounds[:, 1])
    if not member.any(1).all():
        bad = tokens[~member.any(1)].unique().tolist()
        raise ValueError(f"{item}: token(s) {bad} belong to no class of {list(token_classes)}")
    return bounds[member.int().argmax(1)].unbind(1)


def _unused_tokens(ids: torch.Tensor, start: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """``[N, size.max()]``: token ``start + j`` of the class occurs nowhere in example ``n``."""
    offset = ids - start[:, None]
    offset = torch.where((offset >= 0) & (offset < size[:, None]), offset, size.max())
    present = torch.zeros(len(ids), int(size.max()) + 1, dtype=torch.bool).scatter_(1, offset, True)
    return (torch.arange(int(size.max()))[None] < size[:, None]) & ~present[:, :-1]


def random_positions(tensors, seed: int = 0) -> torch.Tensor:
    """``[N]`` per example a uniformly random position ``t < predicts_answer`` that is none of
    the example's probe positions (every entry of ``tensors.positions``), or ``-1`` where no
    such position exists (e.g. AR examples with a single pair).

    Seeded and vectorised; the draw is a stream of its own (numpy ``SeedSequence(seed)``,
    spawn key 1), independent of ``corrupt``'s. Corruption replaces a token in place, so the
    position is the same in the clean and the corrupted input.
    """
    n, width = tensors.input_ids.shape
    t = torch.arange(width)[None]
    candidates = (t < tensors.predicts_answer[:, None]) & (t < tensors.lengths[:, None])
    for pos in tensors.positions.values():
        candidates &= t != pos[:, None]
    rng = np.random.default_rng(np.random.SeedSequence(seed % 2**64, spawn_key=(1,)))
    score = torch.from_numpy(rng.random((n, width)))
    choice = score.masked_fill(~candidates, -1.0).argmax(1)
    return torch.where(candidates.any(1), choice, -1)


def patch_locations(tensors, positions: Sequence[str], seed: int = 0) -> torch.Tensor:
    """``[P, N]`` the index of each named position (a key of ``tensors.positions`` or
    ``RANDOM``) in each example; ``-1`` where an example has no such position."""
    unknown = [p for p in positions if p != RANDOM and p not in tensors.positions]
    if unknown:
        raise ValueError(f"unknown position(s) {unknown}; allowed: {[*tensors.positions, RANDOM]}")
    named = {RANDOM: random_positions(tensors, seed)} if RANDOM in positions else {}
    named.update(tensors.positions)
    return torch.stack([named[p] for p in positions]) if positions else \
        torch.zeros(0, len(tensors), dtype=torch.long)


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(P ‖ Q) = Σ_v P(v) (log P(v) − log Q(v))`` over the last axis, from log-probabilities
    (float64; broadcasting). Exactly 0 where ``logp == logq``; rounding below 0 is clipped."""
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0)


def interchange(
    model: LanguageModel,
    source_ids: torch.Tensor,
    base_ids: torch.Tensor,
    lengths: torch.Tensor,
    read_pos: torch.Tensor,
    answer: torch.Tensor,
    locations: torch.Tensor,
    components: Sequence[str] | None = None,
    batch_size: int = 64,
    skip_noops: bool = True,
) -> dict[str, torch.Tensor]:
    """Patch ``source_ids``' activations into every base of ``base_ids`` at every layer ×
    component × location, and read the answer at ``read_pos``.

    ``source_ids`` ``[N, L]``; ``base_ids`` ``[K, N, L]`` (or ``[N, L]`` for ``K = 1``): K base
    inputs per example that share the source (e.g. one per corrupted item); ``lengths`` ``[N]``
    (columns beyond a batch's longest example are dropped); ``read_pos``, ``answer`` ``[N]``;
    ``locations`` ``[P, N]``: the position patched, the same in source and base, ``-1`` for
    "none" (that example's results for that location are NaN).

    Returns CPU tensors: ``p_source``, ``logit_source`` ``[N]``; ``p_base``, ``logit_base``,
    ``kl_source_base = KL(P_source ‖ P_base)`` ``[K, N]``; and ``p_patched``,
    ``logit_patched``, ``kl_patched_base = KL(P_patched ‖ P_base)`` and the bool ``ran``
    ``[K, n_layers, C, P, N]``, with C the ``components`` (default: all the model has). ``p`` is
    the answer's probability, ``logit`` its raw logit, KL over the full next-token distribution
    at ``read_pos`` (float64).

    With ``skip_noops`` a cell whose source activation is bit-identical to the base's own
    activation at that site (e.g. every position but the corrupted one at layer 0's input, or
    any position before it in a causal model) is not run: replacing a vector by itself leaves
    the base run as it is, so its result is the base run's (``ran`` False there, ``kl`` 0).
    ``skip_noops=False`` runs every cell through pyvene.

    Work: one ``IntervenableModel`` per (layer, component), built once; per batch of
    ``batch_size`` examples one source pass captures every (layer, component, location) at
    once (shared by the K bases), one pass per base runs it unpatched (capturing the same
    sites), and each (base, layer, component) runs one patched pass over the P × ``batch_size``
    cells (all locations stacked) that are not no-ops. Results stay on the model's device
    until the end. The model runs in ``inference``, its ``requires_grad`` flags restored after.
    """
    components, base_ids = _checked_inputs(model, source_ids, base_ids, locations, components)
    n_layers, device = model.config.n_layers, model.device
    (k, n, _), n_pos = base_ids.shape, len(locations)
    absent = locations < 0
    locations = torch.where(absent, read_pos[None], locations)  # any valid index; masked below
    out = _zero_results(k, (n_layers, len(components), n_pos), n, device)
    with inference(model, restore_grad_flags=True), Progress(log, "interventions", n, unit="examples") as progress:
        intervenables = {(layer, c): intervenable_model(model, layer, c)
                         for layer in range(n_layers) for c in components}
        for idx in batches(n, batch_size):
            batch, bases = _batch_at(idx, source_ids, base_ids, lengths, read_pos, answer, locations, absent, device)
            _interchange_batch(model, intervenables, components, batch, bases, skip_noops, out, idx)
            progress.advance(idx.stop - idx.start)
    out = {name: value.cpu() for name, value in out.items()}
    for name in ("p_patched", "logit_patched", "kl_patched_base"):
        out[name][absent[None, None, None].expand_as(out[name])] = float("nan")
    return out


def _batch_at(idx: slice, source_ids, base_ids, lengths, read_pos, answer, locations, absent, device):
    """Batch ``idx`` on ``device``, trimmed to its longest example: the clean side and the K bases."""
    width = int(lengths[idx].max())
    batch = _Batch.of(source_ids[idx, :width].to(device), read_pos[idx].to(device), answer[idx].to(device),
                      locations[:, idx].to(device), ~absent[:, idx].to(device))
    return batch, base_ids[:, idx, :width].to(device)


def _checked_inputs(model, source_ids, base_ids, locations, components) -> tuple[list[str], torch.Tensor]:
    """The components (default: all the model has) and ``base_ids`` as ``[K, N, L]``, both checked."""
    components = list(components or model.components)
    missing = [c for c in components if c not in model.components]
    if missing:
        raise ValueError(f"model has no component(s) {missing}; it has {model.components}")
    if base_ids.dim() == 2:
        base_ids = base_ids.unsqueeze(0)
    if source_ids.shape != base_ids.shape[1:] or locations.shape[1] != base_ids.shape[1]:
        raise ValueError(f"shapes disagree: source {tuple(source_ids.shape)}, bases {tuple(base_ids.shape)}, "
                         f"locations {tuple(locations.shape)}")
    return components, base_ids


def _zero_results(k: int, grid: tuple[int, ...], n: int, device) -> dict[str, torch.Tensor]:
    """``interchange``'s results, zero: per example, per (base, example) and per (base, *grid, example) cell."""
    cells = (k, *grid, n)
    out = {name: torch.zeros(shape, dtype=torch.float64, device=device) for name, shape in [
        ("p_source", (n,)), ("logit_source", (n,)), ("p_base", (k, n)), ("logit_base", (k, n)),
        ("kl_source_base", (k, n)), ("p_patched", cells), ("logit_patched", cells), ("kl_patched_base", cells)]}
    out["ran"] = torch.zeros(cells, dtype=torch.bool, device=device)
    return out


@dataclass(frozen=True)
class _Batch:
    """One batch of ``b`` examples and its ``P × b`` cells, stacked position-major: cell
    ``p * b + j`` patches example ``j`` at location ``p``."""

    source: torch.Tensor  # [b, L]
    read_pos: torch.Tensor  # [b]
    answer: torch.Tensor  # [b]
    sites: tuple[torch.Tensor, torch.Tensor]  # (example, position), each [P, b]: what ``capture`` reads
    rows: torch.Tensor  # [P * b] each cell's example
    where: torch.Tensor  # [P * b] each cell's position
    select: torch.Tensor  # [P * b, L] each cell's read-out mask (the read position is the same for every base)
    wanted: torch.Tensor  # [P * b] False where the example has no such location: nothing to run

    @classmethod
    def of(cls, source, read_pos, answer, locations, wanted) -> _Batch:
        (n_pos, b), device = locations.shape, source.device
        rows = torch.arange(b, device=device).repeat(n_pos)
        return cls(source, read_pos, answer, (torch.arange(b, device=device).expand(n_pos, b), locations), rows,
                   locations.reshape(-1), select_mask(source, read_pos)[rows], wanted.reshape(-1))


def _interchange_batch(model, intervenables, components, batch: _Batch, bases, skip_noops, out, idx) -> None:
    """Fill ``out`` at examples ``idx`` from one source pass, one pass per base and the patched passes."""
    points = list(intervenables)
    n_pos, b = batch.sites[1].shape
    with capture(model, points, *batch.sites) as source_acts:
        logits_source = query_logits(model, batch.source, batch.read_pos)  # (b, V)
    answers = batch.answer[:, None]
    logp_source, out["p_source"][idx], out["logit_source"][idx] = _answer_scores(logits_source, answers)
    for kk, base in enumerate(bases):
        with capture(model, points if skip_noops else [], *batch.sites) as base_acts:
            logits_base = query_logits(model, base, batch.read_pos)
        logp_base, p_base, logit_base = _answer_scores(logits_base, answers)
        out["p_base"][kk, idx], out["logit_base"][kk, idx] = p_base, logit_base
        out["kl_source_base"][kk, idx] = kl_divergence(logp_source, logp_base)
        for (layer, component), intervenable in intervenables.items():
            run = batch.wanted
            if skip_noops:
                run = run & (source_acts[layer, component] != base_acts[layer, component]).any(-1).reshape(-1)
            patch = source_acts[layer, component].reshape(n_pos * b, -1)
            p, logit, kl = _patched_cells(intervenable, batch, base, patch, run, logp_base, p_base, logit_base)
            at = (kk, layer, components.index(component), slice(None), idx)
            for name, value in (("p_patched", p), ("logit_patched", logit), ("kl_patched_base", kl), ("ran", run)):
                out[name][at] = value.view(n_pos, b)


def _patched_cells(intervenable, batch: _Batch, base, patch, run, logp_base, p_base, logit_base):
    """``(p, logit, kl)`` per cell: the patched run's where ``run``, the base run's (KL 0) elsewhere."""
    n_pos = len(batch.sites[1])
    chosen = run.nonzero().squeeze(1)
    p, logit = p_base.repeat(n_pos), logit_base.repeat(n_pos)  # no-op cells keep the base run's results
    kl = torch.zeros(len(run), dtype=torch.float64, device=run.device)
    if len(chosen):
        rows = batch.rows[chosen]
        logits = patched_logits(intervenable, base[rows], batch.select[chosen], batch.where[chosen], patch[chosen])
        logp, p[chosen], logit[chosen] = _answer_scores(logits, batch.answer[rows, None])
        kl[chosen] = kl_divergence(logp, logp_base[rows])
    return p, logit, kl


def _answer_scores(logits: torch.Tensor, answers: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(log-probabilities, the answer's probability, its logit)`` of next-token ``logits``
    (float64) for ``answers`` ``[n, 1]``."""
    logits = logits.double()
    logp = logits.log_softmax(-1)
    return logp, logp.gather(-1, answers).squeeze(-1).exp(), logits.gather(-1, answers).squeeze(-1)


def run_interventions(
    model: LanguageModel,
    tensors,
    token_classes: dict[str, Sequence[int]],
    corrupt_items: Sequence[str] = ("query_item_orig", "target_item_orig"),
    positions: Sequence[str] | None = None,
    components: Sequence[str] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    corruption: str = "paper",
) -> pd.DataFrame:
    """Patch clean activations into corrupted runs at every layer × component × position.

    ``positions`` are names of ``tensors.positions`` or ``"random"`` (``RANDOM``); by default
    every probe position followed by ``"random"``: per example one seeded, uniformly drawn
    position before the answer-predicting one that is no probe position (``random_positions``,
    seeded by ``seed``; the same for every corrupted item, and for clean and corrupted runs,
    since corruption replaces a token in place). It is the control: a position that carries
    nothing the task needs. Examples without such a position get NaN there.

    Returns a long DataFrame with columns ``example, query_type, corrupted, layer,
    component, position, metric, value`` (``value`` float32):

    * one row per (example, corrupted, layer, component, position) and metric
      ``p_patched``, ``logit_patched`` (the clean answer's probability / logit at the
      answer-predicting position after patching), ``p_diff = p_patched - p_corrupted``,
      ``logit_diff = logit_patched - logit_corrupted`` and ``kl_patched_corrupted =
      KL(P_patched ‖ P_corrupted)``: the KL divergence, in nats, of the corrupted run's
      next-token distribution from the patched run's, over the whole vocabulary at the
      answer-predicting position (0 iff patching left the prediction unchanged);
    * one reference row per (example, corrupted) and metric ``p_clean``, ``p_corrupted``,
      ``logit_clean``, ``logit_corrupted`` and ``kl_clean_corrupted = KL(P_clean ‖
      P_corrupted)`` (how much the corruption moved the prediction, same direction), with
      ``layer = -1``, ``component = "none"``, ``position = "none"``.

    A heatmap is one groupby away, e.g.
    ``df[df.metric == "p_diff"].groupby(["corrupted", "layer", "component", "position"]).value.mean()``;
    ``restoration_summary`` aggregates the whole table. Source and base share the position;
    corruption ``i`` of ``corrupt_items`` uses seed ``seed + i`` and the ``corruption`` rule of ``corrupt``. ``batch_size`` examples go
    into each source pass; each patched pass runs ``len(positions)`` times as many rows (one
    per example and position; see ``interchange``).
    """
    positions = list(positions) if positions is not None else [*tensors.positions, RANDOM]
    components = list(components or model.components)
    locations = patch_locations(tensors, positions, seed)
    bases = torch.stack([corrupt(tensors, item, token_classes, seed + i, corruption) for i, item in enumerate(corrupt_items)])
    scores = interchange(model, tensors.input_ids, bases, tensors.lengths, tensors.predicts_answer,
                         tensors.answer, locations, components, batch_size)

    k = len(corrupt_items)
    reference = torch.stack([scores["p_source"].expand(k, -1), scores["p_base"],
                             scores["logit_source"].expand(k, -1), scores["logit_base"],
                             scores["kl_source_base"]], 1)  # (K, M, N) in REFERENCE_METRICS order
    before = (slice(None), None, None, None)  # (K, N) -> (K, 1, 1, 1, N)
    patched = torch.stack([scores["p_patched"], scores["logit_patched"],
                           scores["p_patched"] - scores["p_base"][before],
                           scores["logit_patched"] - scores["logit_base"][before],
                           scores["kl_patched_base"]], 1)  # (K, M, layer, C, P, N) in PATCH_METRICS order
    return _tidy(patched.float().numpy(), reference.float().numpy(), tensors.query_type, list(corrupt_items),
                 list(range(model.config.n_layers)), components, positions)


def _tidy(patched: np.ndarray, reference: np.ndarray, query_type, items, layers, components, positions):
    """Long DataFrame from ``patched`` (I, M, layer, C, P, N) and ``reference`` (I, M, N)."""
    query_type = np.asarray(query_type, dtype=object)

    def frame(values: np.ndarray, axes: list[tuple[str, list]]) -> pd.DataFrame:
        shape = [len(labels) for _, labels in axes]
        columns = {}
        for axis, (name, labels) in enumerate(axes):  # label of each cell of a C-order ravel
            inner, outer = int(np.prod(shape[axis + 1:])), int(np.prod(shape[:axis]))
            codes = np.tile(np.repeat(np.arange(shape[axis]), inner), outer)
            columns[name] = np.asarray(labels, dtype=object if name != "layer" else int)[codes]
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
