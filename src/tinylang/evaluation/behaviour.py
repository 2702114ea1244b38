"""Behavioural evaluation: how well a model predicts the answer at the query position."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from tinylang.models.backbone import LanguageModel

from .batching import batches, select_mask, trimmed
from .runtime import inference

METRICS = ("loss", "accuracy", "answer_prob")
TARGET_METRICS = ("kl_target", "set_accuracy")
"""Extra metrics for tasks with a target distribution over several valid answers (ATR)."""
SCHEMA = {"query_type": "str", "metric": "str", "value": "float64", "n": "int64"}
"""The columns of one split's table and their pandas dtypes (``evaluate_behaviour`` puts ``split`` first)."""


def answer_scores(logits: torch.Tensor, answer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability and raw logit of ``answer`` under ``logits`` ``(..., V)``."""
    logp = logits.float().log_softmax(-1).gather(-1, answer.unsqueeze(-1)).squeeze(-1)
    logit = logits.float().gather(-1, answer.unsqueeze(-1)).squeeze(-1)
    return logp, logit


@torch.no_grad()
def query_logits(model: LanguageModel, input_ids: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, V)`` at each row's query position, without gradients (the LM head runs only there)."""
    return model(input_ids, select=select_mask(input_ids, query_pos))


def target_scores(logits: torch.Tensor, answer_set: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``KL(target ‖ model)`` and whether the model's top token is a valid answer, per row.

    ``answer_set`` ``(B, A)`` and ``weights`` ``(B, A)`` give the target distribution (weight 0
    on padding): ``KL = sum_a w_a (log w_a - log p_model(a))``.
    """
    logp = logits.float().log_softmax(-1).gather(-1, answer_set)
    present = weights > 0
    terms = torch.where(present, weights * (weights.clamp_min(1e-30).log() - logp), torch.zeros_like(logp))
    in_set = ((logits.argmax(-1, keepdim=True) == answer_set) & present).any(-1)
    return terms.sum(-1), in_set.float()


def example_scores(model: LanguageModel, tensors, batch_size: int = 256) -> pd.DataFrame:
    """One row per example: ``query_type``, ``loss``, ``accuracy``, ``answer_prob``, and for
    tasks with several valid answers ``kl_target`` and ``set_accuracy`` (see ``target_scores``)."""
    device = model.device
    query = tensors.predicts_answer
    has_target = tensors.answer_set is not None
    scores: dict[str, list[torch.Tensor]] = {m: [] for m in METRICS + (TARGET_METRICS if has_target else ())}
    with inference(model):
        for idx in batches(len(tensors), batch_size):
            ids = trimmed(tensors.input_ids[idx], tensors.lengths[idx]).to(device)
            answer = tensors.answer[idx].to(device)
            logits = query_logits(model, ids, query[idx].to(device))
            logp, _ = answer_scores(logits, answer)
            scores["loss"].append(-logp)
            scores["accuracy"].append((logits.argmax(-1) == answer).float())
            scores["answer_prob"].append(logp.exp())
            if has_target:
                kl, in_set = target_scores(logits, tensors.answer_set[idx].to(device),
                                           tensors.answer_weights[idx].to(device))
                scores["kl_target"].append(kl)
                scores["set_accuracy"].append(in_set)
    cat = lambda xs: torch.cat(xs).cpu().numpy() if xs else np.zeros(0)  # noqa: E731
    return pd.DataFrame({"query_type": np.asarray(tensors.query_type, dtype=object),
                         **{metric: cat(values) for metric, values in scores.items()}})


def evaluate_behaviour(model: LanguageModel, tensors_by_split: dict, batch_size: int = 256) -> pd.DataFrame:
    """Answer loss, accuracy and probability (and, where the task has a target distribution,
    ``kl_target`` and ``set_accuracy``) per split and query type, in long format.

    Columns ``split, query_type, metric, value, n``; every split also gets a row per
    metric with ``query_type == "ALL"`` (all its examples). ``n`` counts examples.
    """
    frames = []
    for split, tensors in tensors_by_split.items():
        scores = example_scores(model, tensors, batch_size)
        metrics = [c for c in scores.columns if c != "query_type"]
        per_type = scores.groupby("query_type", sort=True)[metrics]
        stats = pd.concat([per_type.mean(), scores[metrics].mean().to_frame("ALL").T])
        counts = pd.concat([per_type.size(), pd.Series({"ALL": len(scores)})])
        long = stats.rename_axis("query_type").reset_index().melt(
            id_vars="query_type", var_name="metric", value_name="value")
        # pandas' groupby mean of float32 is float64 for one group, float32 for several: the declared type always
        long["value"] = long["value"].astype(SCHEMA["value"])
        long["n"] = long["query_type"].map(counts).astype(int)
        long.insert(0, "split", split)
        frames.append(long)
    columns = ["split", *SCHEMA]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
