"""Export to safetensors + JSON and back: the same model, the same logits."""

from __future__ import annotations

import json

import pytest
import torch

from tinylang.cli import main
from tinylang.models import (
    ModelConfig,
    build_model,
    export_checkpoint,
    export_model,
    load_checkpoint,
    load_exported,
    save_checkpoint,
)


@pytest.mark.parametrize("config", [
    {"mixer": "attention", "pos_embed": True},  # a tied head: stored once, tied again on load
    {"mixer": "attention", "tie_embeddings": False, "init": "torch"},
    {"mixer": "mamba", "mixer_args": {"d_state": 4}},
    {"mixer": "based"},
    {"mixer": "hyena"},
], ids=["attention-tied", "attention-untied", "mamba", "based", "hyena"])
def test_an_exported_checkpoint_reloads_with_identical_logits(tmp_path, config):
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_layers=2, **config), 12, 32).eval()
    with torch.no_grad():  # weights off their initial values, so a lost or mixed-up tensor shows
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp_path / "step7.pt", model, 7)
    export_checkpoint(tmp_path / "step7.pt", tmp_path / "exported")
    loaded, info = load_exported(tmp_path / "exported")
    ids = torch.randint(1, 12, (3, 20))
    with torch.no_grad():
        assert torch.equal(loaded(ids), load_checkpoint(tmp_path / "step7.pt")[0](ids))
    assert info["step"] == 7 and info["vocab_size"] == 12 and info["max_len"] == 32
    assert ModelConfig(**info["model_config"]) == model.model_config
    assert (loaded.lm_head.weight is loaded.embed.weight) == model.model_config.tie_embeddings


def test_the_cli_exports_and_the_config_is_plain_json(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 12, 16)
    save_checkpoint(tmp_path / "step3.pt", model, 3)
    main(["export", str(tmp_path / "step3.pt"), str(tmp_path / "out")])
    assert "model.safetensors" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["format"] == "tinylang-export-v1" and config["model_config"]["mixer"] == "attention"
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "out" / "model.safetensors")  # readable without tinylang
    state = model.state_dict()
    assert all(torch.equal(weights[name], state[name]) for name in weights)


def test_a_folder_without_both_files_or_with_another_config_is_refused(tmp_path):
    torch.manual_seed(0)
    export_model(build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 12, 16), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors does not exist"):
        load_exported(tmp_path / "m")
    export_model(build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 12, 16), tmp_path / "n")
    (tmp_path / "n" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a tinylang-export-v1 config"):
        load_exported(tmp_path / "n")
