"""Behavioural evaluation: how well a model predicts the answer at the query position."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from tinylang.models.backbone import LanguageModel

METRICS = ("loss", "accuracy", "answer_prob")


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def trimmed(input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``input_ids`` without the padding columns no row of this batch needs."""
    return input_ids[:, : int(lengths.max())]


def select_mask(input_ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, L)`` mask, True at one position per row (for ``model(select=...)``)."""
    mask = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    mask[torch.arange(len(pos), device=pos.device), pos] = True
    return mask


def answer_scores(logits: torch.Tensor, answer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability and raw logit of ``answer`` under ``logits`` ``(..., V)``."""
    logp = logits.float().log_softmax(-1).gather(-1, answer.unsqueeze(-1)).squeeze(-1)
    logit = logits.float().gather(-1, answer.unsqueeze(-1)).squeeze(-1)
    return logp, logit


@torch.no_grad()
def query_logits(model: LanguageModel, input_ids: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, V)`` at each row's query position (the LM head runs only there)."""
    return model(input_ids, select=select_mask(input_ids, query_pos))


@torch.no_grad()
def example_scores(model: LanguageModel, tensors, batch_size: int = 256) -> pd.DataFrame:
    """One row per example: ``query_type``, ``loss``, ``accuracy``, ``answer_prob``."""
    device = model.device
    query = tensors.predicts_answer
    loss, correct, prob = [], [], []
    for idx in batches(len(tensors), batch_size):
        ids = trimmed(tensors.input_ids[idx], tensors.lengths[idx]).to(device)
        answer = tensors.answer[idx].to(device)
        logits = query_logits(model, ids, query[idx].to(device))
        logp, _ = answer_scores(logits, answer)
        loss.append(-logp)
        correct.append((logits.argmax(-1) == answer).float())
        prob.append(logp.exp())
    cat = lambda xs: torch.cat(xs).cpu().numpy() if xs else np.zeros(0)  # noqa: E731
    return pd.DataFrame({
        "query_type": np.asarray(tensors.query_type, dtype=object),
        "loss": cat(loss), "accuracy": cat(correct), "answer_prob": cat(prob),
    })


def evaluate_behaviour(model: LanguageModel, tensors_by_split: dict, batch_size: int = 256) -> pd.DataFrame:
    """Answer loss, accuracy and probability per split and query type, in long format.

    Columns ``split, query_type, metric, value, n``; every split also gets a row per
    metric with ``query_type == "ALL"`` (all its examples). ``n`` counts examples.
    """
    was_training = model.training
    model.eval()
    frames = []
    try:
        for split, tensors in tensors_by_split.items():
            scores = example_scores(model, tensors, batch_size)
            per_type = scores.groupby("query_type", sort=True)[list(METRICS)]
            stats = pd.concat([per_type.mean(), scores[list(METRICS)].mean().to_frame("ALL").T])
            counts = pd.concat([per_type.size(), pd.Series({"ALL": len(scores)})])
            long = stats.rename_axis("query_type").reset_index().melt(
                id_vars="query_type", var_name="metric", value_name="value")
            long["n"] = long["query_type"].map(counts).astype(int)
            long.insert(0, "split", split)
            frames.append(long)
    finally:
        model.train(was_training)
    columns = ["split", "query_type", "metric", "value", "n"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
