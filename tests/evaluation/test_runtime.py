"""The evaluators' eval-mode guard and inference context restore the model however the block ends."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinylang.evaluation.runtime import eval_mode, inference


def test_eval_mode_restores_the_mode_and_on_request_the_grad_flags_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    model[0].bias.requires_grad_(False)
    with pytest.raises(RuntimeError), eval_mode(model, restore_grad_flags=True):
        assert not model.training
        for param in model.parameters():  # as pyvene does
            param.requires_grad_(False)
        raise RuntimeError("an evaluator failed")
    assert model.training and model[0].weight.requires_grad and not model[0].bias.requires_grad
    with eval_mode(model.eval()):
        model.train()
    assert not model.training  # the mode it came in with
    with eval_mode(model):
        model[0].weight.requires_grad_(False)
    assert not model[0].weight.requires_grad  # flags are left alone unless asked


def test_inference_is_eval_mode_without_gradients_and_restores_both():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    with pytest.raises(RuntimeError), inference(model, restore_grad_flags=True):
        assert not model.training and not torch.is_grad_enabled()
        assert not model(torch.ones(1, 2)).requires_grad
        model[0].weight.requires_grad_(False)
        raise RuntimeError("an evaluator failed")
    assert model.training and torch.is_grad_enabled() and model[0].weight.requires_grad
    # no_grad, not inference_mode: what an evaluator returns can still feed an autograd graph
    with inference(model):
        features = model[0](torch.ones(3, 2))
    probe = nn.Linear(2, 1)
    probe(features).sum().backward()
    assert probe.weight.grad is not None
