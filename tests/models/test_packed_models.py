"""Packed models: K runs of one architecture in one vmapped forward give each run's own logits
and, through one backward, each run's own gradients; for every built-in mixer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinylang.models import MIXERS, ModelConfig, build_model
from tinylang.models.packed import PackedModels, packing_problem

VOCAB, LENGTH, RUNS = 20, 24, 3
BUILT_IN = [name for name in MIXERS.names() if ":" not in name]
UNPACKABLE = {"lstm"}  # torch.nn.LSTM has no vmap rule: its runs train one by one


def models_of(mixer: str, seeds=range(RUNS)) -> list[torch.nn.Module]:
    config = ModelConfig(mixer=mixer, d_model=16, n_layers=2)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(config, VOCAB, LENGTH).double())
    return models


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


@pytest.mark.parametrize("mixer", sorted(set(BUILT_IN) - UNPACKABLE))
def test_a_pack_computes_each_runs_logits_and_gradients(mixer):
    models = models_of(mixer)
    packed = PackedModels(models)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (RUNS, 4, LENGTH), generator=generator)  # each run its own batch
    targets = torch.randint(0, VOCAB, (RUNS, 4, LENGTH), generator=generator)

    logits = packed(ids)
    losses = torch.stack([loss_of(logits[k], targets[k]) for k in range(RUNS)])
    losses.sum().backward()
    for k, model in enumerate(models):
        own = model(ids[k])
        torch.testing.assert_close(logits[k], own, rtol=1e-10, atol=1e-10)
        loss_of(own, targets[k]).backward()
        for name, parameter in model.named_parameters():
            if parameter.grad is None:  # unused by this configuration (e.g. a disabled convolution)
                assert packed.params[name].grad is None, name
                continue
            torch.testing.assert_close(packed.params[name].grad[k], parameter.grad, rtol=1e-8, atol=1e-10,
                                       msg=lambda m, name=name: f"{mixer} {name}: {m}")
    assert len({round(float(x), 6) for x in losses.detach()}) == RUNS  # three different runs, not one repeated


def test_unpacking_gives_back_each_runs_model():
    models = models_of("mamba")
    packed = PackedModels(models)
    with torch.no_grad():
        for tensor in packed.params.values():
            tensor.mul_(2)  # as an optimiser step would
    ids = torch.randint(0, VOCAB, (2, LENGTH))
    for k, model in enumerate(packed.unpack()):
        assert model is not models[k]
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(parameter, packed.params[name][k])
        torch.testing.assert_close(model(ids), packed(ids.expand(RUNS, -1, -1))[k])


def test_models_of_different_shapes_do_not_pack():
    small = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), VOCAB, LENGTH)
    wide = build_model(ModelConfig(mixer="attention", d_model=32, n_layers=1), VOCAB, LENGTH)
    with pytest.raises(ValueError, match="share one architecture"):
        PackedModels([small, wide])
    with pytest.raises(ValueError, match="2 runs on its first axis, the pack 1"):
        PackedModels([small])(torch.zeros(2, 1, 4, dtype=torch.long))


@pytest.mark.parametrize("mixer", BUILT_IN)
def test_packing_problem_names_the_mixers_that_cannot_pack(mixer):
    problem = packing_problem(build_model(ModelConfig(mixer=mixer, d_model=8, n_layers=1), VOCAB, LENGTH))
    if mixer in UNPACKABLE:
        assert problem.startswith(f"mixer {mixer!r} cannot run under torch.func.vmap (")
    else:
        assert problem is None
