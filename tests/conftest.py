"""Shared fixtures: tiny study configs that run in seconds."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

TINY_STUDY = {
    "study": "tiny",
    "device": "cpu",
    "threads": 1,
    "languages": {
        "ar": {
            "type": "ar",
            "num_kv": 16,
            "min_pairs": 2,
            "max_pairs": 3,
            "seed": 0,
            "splits": {"train": 256, "test": 32},
        }
    },
    "models": {
        "attention": {"mixer": "attention", "d_model": 16, "n_layers": 1},
        "mamba": {"mixer": "mamba", "d_model": 16, "n_layers": 1, "mixer_args": {"d_state": 4}},
    },
    "training": {"lr": 0.003, "batch_size": 16, "steps": 12, "checkpoints": [6], "seed": 0},
    "runs": {
        "attention": {"language": "ar", "model": "attention"},
        "mamba": {"language": "ar", "model": "mamba"},
    },
    "evaluation": {"checkpoints": "all", "max_examples": 32},
    "interventions": {"checkpoints": "final", "num_examples": 8},
}


@pytest.fixture
def tiny_study() -> dict:
    """A fresh copy of the tiny study config, safe to modify."""
    return copy.deepcopy(TINY_STUDY)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models gain nothing from threads, and oversubscribed cores stall OpenMP."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
