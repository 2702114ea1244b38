"""nnsight on a tinylang model, as the README shows it: the same activations as capture_all, and
an edit that changes only what comes after it."""

from __future__ import annotations

import pytest
import torch

from tinylang.evaluation import capture_all
from tinylang.models import ModelConfig, build_model

nnsight = pytest.importorskip("nnsight")


def test_nnsight_reads_and_edits_the_hook_points_of_a_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=2), 12, 16).eval()
    ids = torch.randint(3, 12, (2, 8))
    traced = nnsight.NNsight(model)
    with traced.trace(ids):
        mixer_output = traced.layers[1].mixer.output.save()
    torch.testing.assert_close(mixer_output, capture_all(model, ids)[1, "mixer_output"])
    with traced.trace(ids):
        traced.layers[1].mixer.output[:, 5] = 0
        edited = traced.output.save()
    with torch.no_grad():
        clean = model(ids)
    torch.testing.assert_close(edited[:, :5], clean[:, :5])  # causal: nothing before the edit moves
    assert not torch.allclose(edited[:, 5], clean[:, 5])
