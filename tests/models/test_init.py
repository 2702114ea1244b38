"""The paper's initialisation (zoology's ``_init_weights``) and its tied head, and that every
paper study builds the paper's model."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from conftest import REPO
from torch import nn

from tinylang.config import load_study
from tinylang.models import ModelConfig, build_model

STUDIES = sorted((REPO / "config" / "studies").glob("*.yaml"))


def build(mixer: str, n_layers: int = 2, d_model: int = 64, **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(mixer=mixer, d_model=d_model, n_layers=n_layers, **options), 512, 64)


def default_linear_std(layer: nn.Linear) -> float:
    """PyTorch's Linear init, U(±1/sqrt(fan_in)), has this standard deviation."""
    return 1 / math.sqrt(3 * layer.in_features)


def assert_std(tensor: torch.Tensor, expected: float, rel: float = 0.06) -> None:
    assert tensor.std().item() == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_transformer_blocks_get_normal_002_and_depth_scaled_output_projections(n_layers):
    model = build("attention", n_layers=n_layers)
    assert_std(model.embed.weight, 0.02)
    assert_std(model.pos_embed.weight, 0.02)
    for block in model.layers:
        assert_std(block.mixer.qkv.weight, 0.02)
        assert_std(block.mlp.fc_in.weight, 0.02)
        for out in (block.mixer.out_proj, block.mlp.fc_out):
            assert_std(out.weight, 0.02 / math.sqrt(2 * n_layers))
        for linear in (block.mixer.out_proj, block.mlp.fc_in, block.mlp.fc_out):
            assert (linear.bias == 0).all()
        assert (block.norm1.weight == 1).all() and isinstance(block.norm1, nn.LayerNorm)


def test_the_head_is_tied_to_the_token_embedding():
    model = build("attention")
    assert model.lm_head.weight is model.embed.weight
    untied = build("attention", tie_embeddings=False)
    assert untied.lm_head.weight is not untied.embed.weight
    assert_std(untied.lm_head.weight, 0.02)


@pytest.mark.parametrize("n_layers", [2, 4])
def test_mamba_blocks_keep_their_init_but_zero_biases_and_scale_out_proj(n_layers):
    model = build("mamba", n_layers=n_layers, mixer_args={"bias": True})
    assert_std(model.embed.weight, 0.02)
    for block in model.layers:
        mixer = block.mixer
        assert isinstance(block.norm1, nn.RMSNorm) and block.norm1.eps == 1e-5 and block.mlp is None
        assert_std(mixer.in_proj.weight, default_linear_std(mixer.in_proj))
        assert (mixer.in_proj.bias == 0).all() and (mixer.out_proj.bias == 0).all()
        assert_std(mixer.out_proj.weight, default_linear_std(mixer.out_proj) / math.sqrt(n_layers))
        assert mixer.dt_proj.bias.abs().min() > 0  # marked _no_reinit: Mamba's dt initialisation stays
    assert isinstance(model.norm_f, nn.LayerNorm)


def test_zoology_init_leaves_convolutions_and_raw_parameters_alone():
    torch.manual_seed(0)
    zoology = build("hyena")
    torch.manual_seed(0)
    plain = build("hyena", init="torch")
    conv = dict(zoology.named_parameters())
    for name, param in plain.named_parameters():
        if "short_filter" in name or name.endswith((".z", "filter_bias", "freq")):
            assert torch.equal(param, conv[name]), name
        elif "implicit" in name or "filter" in name:  # the filter MLP's Linears are re-drawn
            assert not torch.equal(param, conv[name]) or (param == 0).all(), name


def test_pytorch_init_is_a_named_option():
    model = build("attention", init="torch", tie_embeddings=False)
    assert_std(model.embed.weight, 1.0)
    assert_std(model.layers[0].mixer.qkv.weight, default_linear_std(model.layers[0].mixer.qkv))
    with pytest.raises(ValueError, match="init"):
        ModelConfig(mixer="attention", init="xavier")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_paper_study_builds_the_papers_model(path):
    study = load_study(yaml.safe_load(path.read_text()), path.parents[1] / "languages")
    for name in study.run_names:
        model = study.run(name).model
        assert model.init == "zoology" and model.tie_embeddings and model.norm == "auto", name
        assert model.n_positions == 1024, name
        assert study.run(name).train.order == "file", name  # the original never shuffles
