"""``capture_all``: every hook point's activations over a batch, consistent with the forward pass."""

from __future__ import annotations

import pytest
import torch

from tinylang.evaluation import capture_all
from tinylang.models import ModelConfig, build_model


@pytest.mark.parametrize("mixer", ["attention", "mamba"])
def test_capture_all_returns_every_hook_point_and_they_chain(mixer):
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer=mixer, d_model=16, n_layers=2), 12, 16).train()
    ids = torch.randint(1, 12, (3, 9))
    acts = capture_all(model, ids)
    assert set(acts) == {(layer, c) for layer in range(2) for c in model.components}
    assert all(a.shape == (3, 9, 16) for a in acts.values())
    assert model.training  # its mode is restored
    torch.testing.assert_close(acts[0, "block_output"], acts[1, "block_input"], rtol=0, atol=0)
    torch.testing.assert_close(acts[1, "block_input"] + acts[1, "mixer_output"] + acts.get((1, "mlp_output"), 0),
                               acts[1, "block_output"])
    with torch.no_grad():
        logits = model.eval().lm_head(model.norm_f(acts[1, "block_output"]))
        torch.testing.assert_close(logits, model(ids))
