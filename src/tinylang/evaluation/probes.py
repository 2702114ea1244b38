"""Linear probes: which item identities can be read linearly off a hook point's activation.

A probe is a multinomial logistic regression that predicts the token id of an item (say the
answer, ``target_item``) from the activation vector at one (layer, component, probe position).
It is fitted on a random half of the examples and scored on the other half.

What a probe tells you, and what it does not:

* High held-out accuracy means the item's identity is *linearly decodable* there: an affine
  read-out of the residual stream (or mixer / MLP input or output) recovers it. It does not
  mean the model *uses* that information; interventions (``run_interventions``) test use.
* Low accuracy means it is not linearly decodable by this probe from this many examples. The
  information may still be present non-linearly, or the probe may be data-starved.
* Decoding an item at the position where its own token sits (``target_item`` at
  ``target_item`` or ``target_item_orig``, ``query_item`` at ``query_item`` or
  ``query_item_orig``) is trivial: the token embedding is in the residual stream. Such cells
  are sanity checks, not findings.
* Compare against controls, not only against ``chance``. Activations of an *untrained* model
  mix the whole causal context, so a probe can exploit e.g. "which values occur before this
  position" and beat the majority-label rate without any retrieval; the interesting quantity
  is the gap between the trained model and such a control.

The fitting itself (``fit_probes``) is plain torch: features standardised with the train half's
mean and standard deviation, then full-batch L-BFGS on mean cross-entropy plus an L2 penalty
on the weights, with all probes of one (layer, component) fitted jointly as independent blocks
(the objective is a sum of per-probe terms, so its minimiser is each probe's own minimiser).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from tinylang.models.backbone import LanguageModel

from .activations import collect

PROBE_METRICS = ("accuracy", "train_accuracy", "chance")
SCHEMA = {"layer": "int64", "component": "str", "position": "str", "target": "str", "metric": "str",
          "value": "float64", "n_train": "int64", "n_test": "int64"}
"""The table's columns and their pandas dtypes."""
COLUMNS = list(SCHEMA)


def split_mask(n: int, train_fraction: float = 0.5, seed: int = 0) -> torch.Tensor:
    """``(n,)`` bool, True for the ``floor(n * train_fraction)`` training examples, chosen by a
    seeded random permutation (the same seed gives the same split)."""
    n_train = int(n * train_fraction)
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction {train_fraction} of {n} examples leaves an empty train or test half")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[perm[:n_train]] = True
    return mask


def _standardise(features: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Features ``(P, N, d)`` centred and scaled by the train half's per-feature mean and std.

    Features (near-)constant on the train half (std ≤ 1e-6 · (1 + |mean|), e.g. at ``bos``,
    which a causal model sees identically in every example) are set to 0 rather than having
    float noise blown up to unit scale.
    """
    x = features.to(torch.float64)
    mean = x[:, train].mean(1, keepdim=True)
    std = x[:, train].std(1, unbiased=False, keepdim=True)
    constant = std <= 1e-6 * (1 + mean.abs())
    return torch.where(constant, torch.zeros_like(x), (x - mean) / torch.where(constant, 1.0, std))


def fit_probes(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, l2: float = 1e-3,
               max_iter: int = 500) -> dict[str, np.ndarray]:
    """Fit one multinomial logistic-regression probe per (feature set, label set) pair.

    ``features`` ``(P, N, d)`` (or ``(N, d)`` for one feature set), ``labels`` ``(T, N)`` (or
    ``(N,)``) integer class ids, ``train`` ``(N,)`` bool. Probe ``(p, t)`` predicts
    ``labels[t]`` from ``features[p]``: it is fitted on the train examples and its classes are
    the labels seen there (a test example whose label never occurs in training is always
    wrong). The objective per probe is ``mean cross-entropy + l2 / 2 · ‖W‖²`` (bias not
    penalised) on standardised features, minimised by full-batch L-BFGS (float64, analytic
    gradient, strong-Wolfe line search, at most ``max_iter`` iterations; stops once every
    gradient entry is below 1e-6; deterministic). All ``P · T`` probes share one optimiser
    run; since the objective is their sum, its minimiser is every probe's own minimiser.
    Where two classes tie for the top score (e.g. constant features and two equally common
    train labels), the prediction is whichever float rounding favours.

    Returns ``(P, T)`` float arrays (squeezed like the inputs): ``accuracy`` on the test
    examples, ``train_accuracy`` on the train examples, and ``chance``, the frequency of the
    most common label among the test examples (the test accuracy of always guessing the test
    mode: an optimistic constant baseline).
    """
    squeeze_p, squeeze_t = features.dim() == 2, labels.dim() == 1
    features, labels, train = _probe_inputs(features, labels, train)
    test = ~train
    x = _standardise(features, train)
    x_train, x_test = x[:, train], x[:, test]
    y_train, y_test = labels[:, train], labels[:, test]
    cls, valid, target = _train_classes(y_train)
    weight, bias = _fit(x_train, target, valid, l2, max_iter)
    P, T = weight.shape[:2]
    with torch.no_grad():
        mode_freq = np.array([torch.unique(y, return_counts=True)[1].max().item() / len(y) for y in y_test])
        out = {
            "accuracy": _accuracy(weight, bias, valid, cls, x_test, y_test),
            "train_accuracy": _accuracy(weight, bias, valid, cls, x_train, y_train),
            "chance": np.broadcast_to(mode_freq[None], (P, T)).copy(),
        }
    if squeeze_p:
        out = {k: v[0] for k, v in out.items()}
    if squeeze_t:
        out = {k: v[..., 0] for k, v in out.items()}
    return out


def _probe_inputs(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor):
    """``(P, N, d)`` features, ``(T, N)`` long labels and an ``(N,)`` bool train mask, checked."""
    features = features[None] if features.dim() == 2 else features
    labels = torch.as_tensor(labels, dtype=torch.long)
    labels = labels[None] if labels.dim() == 1 else labels
    train = torch.as_tensor(train, dtype=torch.bool)
    N = features.shape[1]
    if labels.shape[1] != N or train.shape != (N,):
        raise ValueError(f"features {tuple(features.shape)}, labels {tuple(labels.shape)} and train "
                         f"{tuple(train.shape)} disagree on the number of examples")
    if not train.any() or train.all():
        raise ValueError("train must select some but not all examples")
    return features, labels, train


def _train_classes(y_train: torch.Tensor):
    """Per label set t: its train classes ``cls`` (T, C), padded to a common width C with the
    mask ``valid``, and each train example's class index ``target`` (T, n_train)."""
    classes = [torch.unique(y) for y in y_train]
    T, C = len(classes), max(len(c) for c in classes)
    cls = torch.full((T, C), -1, dtype=torch.long)
    valid = torch.zeros(T, C, dtype=torch.bool)
    for t, c in enumerate(classes):
        cls[t, : len(c)], valid[t, : len(c)] = c, True
    target = (y_train[:, :, None] == cls[:, None, :]).long().argmax(-1)
    return cls, valid, target


def _logits(weight: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """(P, n, d) → (P, T, n, C), invalid classes at -inf."""
    out = torch.einsum("pnd,ptdc->ptnc", xs, weight) + bias[:, :, None, :]
    return out.masked_fill((~valid)[None, :, None, :], float("-inf"))


def _fit(x_train: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, l2: float, max_iter: int):
    """Every probe's weight (P, T, d, C) and bias (P, T, C), by one full-batch L-BFGS run."""
    (P, n_train, d), (T, C) = x_train.shape, valid.shape
    weight = torch.zeros(P, T, d, C, dtype=torch.float64)
    bias = torch.zeros(P, T, C, dtype=torch.float64)
    onehot = torch.zeros(T, n_train, C, dtype=torch.float64).scatter_(-1, target[..., None], 1.0)
    target_index = target[None, :, :, None].expand(P, T, n_train, 1)

    def closure() -> torch.Tensor:
        # The objective and its gradient in closed form (no autograd graph: L-BFGS calls this
        # a few hundred times, and the graph would cost more than the arithmetic).
        logp = _logits(weight, bias, valid, x_train).log_softmax(-1)  # (P, T, n, C)
        nll = -logp.gather(-1, target_index).sum() / n_train
        residual = (logp.exp() - onehot) / n_train  # d nll / d logits; 0 on invalid classes
        weight.grad = (torch.einsum("pnd,ptnc->ptdc", x_train, residual) + l2 * weight).contiguous()
        bias.grad = residual.sum(2)
        return nll + 0.5 * l2 * weight.pow(2).sum()

    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=10,
                                  tolerance_grad=1e-6, tolerance_change=1e-9,
                                  line_search_fn="strong_wolfe")
    optimiser.step(closure)
    return weight, bias


def _accuracy(weight, bias, valid, cls, xs: torch.Tensor, ys: torch.Tensor) -> np.ndarray:
    P, T, _, C = weight.shape
    predicted = cls[None, :, None, :].expand(P, T, xs.shape[1], C).gather(
        -1, _logits(weight, bias, valid, xs).argmax(-1, keepdim=True)).squeeze(-1)  # (P, T, n) label ids
    return (predicted == ys[None]).double().mean(-1).numpy()


def run_probes(
    model: LanguageModel,
    tensors,
    targets: Sequence[str] = ("query_item", "target_item"),
    positions: Sequence[str] | None = None,
    components: Sequence[str] = ("block_output",),
    layers: Sequence[int] | None = None,
    train_fraction: float = 0.5,
    seed: int = 0,
    l2: float = 1e-3,
    max_iter: int = 500,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Probe every layer × component × probe position for the identity of each target item.

    The label of target ``t`` for example ``i`` is the token id at ``tensors.positions[t][i]``
    (e.g. ``target_item``: the answer value; ``query_item``: the queried key). Each probe is a
    multinomial logistic regression (see ``fit_probes``) fitted on a seeded random
    ``train_fraction`` of the examples, the same split for every probe, and scored on the rest.
    ``positions`` defaults to all probe positions of ``tensors``, ``layers`` to all layers.

    Returns a long DataFrame with columns ``layer, component, position, target, metric, value,
    n_train, n_test``; metrics per probe: ``accuracy`` (held-out half), ``train_accuracy`` and
    ``chance`` (the frequency of the most common target label in the held-out half, i.e. the
    accuracy of always guessing it). Rows where ``position`` holds the target's own token (or
    its copy in context) are trivially decodable and serve as sanity checks; the position that
    predicts the answer for AR is ``query_item``.
    """
    positions = list(tensors.positions if positions is None else positions)
    targets = list(targets)
    missing = [name for name in targets if name not in tensors.positions]
    if missing:
        raise ValueError(f"unknown target(s) {missing}; this split has {list(tensors.positions)}")
    layers = list(range(model.config.n_layers) if layers is None else layers)
    points = [(layer, component) for layer in layers for component in components]

    rows = torch.arange(len(tensors))
    labels = torch.stack([tensors.input_ids[rows, tensors.positions[t].cpu()] for t in targets])  # (T, N)
    train = split_mask(len(tensors), train_fraction, seed)
    n_train, n_test = int(train.sum()), int((~train).sum())

    activations = collect(model, tensors, points, positions, batch_size)
    records = []
    for (layer, component), features in activations.items():
        scores = fit_probes(features, labels, train, l2=l2, max_iter=max_iter)
        for p, position in enumerate(positions):
            for t, target in enumerate(targets):
                for metric in PROBE_METRICS:
                    records.append((layer, component, position, target, metric,
                                    float(scores[metric][p, t]), n_train, n_test))
    return pd.DataFrame.from_records(records, columns=COLUMNS)
