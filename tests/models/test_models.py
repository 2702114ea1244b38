"""Every registered mixer on the backbone: shapes, causality, gradients, checkpoints."""

from __future__ import annotations

import pytest
import torch
from conftest import held_out_accuracy

from tinylang.models import (
    MIXERS,
    CheckpointError,
    ModelConfig,
    build_model,
    describe,
    load_checkpoint,
    save_checkpoint,
)
from tinylang.models.mixers import RecurrenceUnavailable, RecurrentMixer, has_recurrence, stores_attention

VOCAB, LENGTH = 20, 12


def tiny(mixer: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(mixer=mixer, d_model=16, n_layers=2, **kwargs), VOCAB, LENGTH).eval()


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_output_shape_and_selected_positions(mixer):
    model = tiny(mixer)
    ids = torch.randint(0, VOCAB, (3, LENGTH))
    assert model(ids).shape == (3, LENGTH, VOCAB)
    select = torch.zeros(3, LENGTH, dtype=torch.bool)
    select[:, 5] = True
    torch.testing.assert_close(model(ids, select=select), model(ids)[:, 5])


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_changing_a_future_token_leaves_earlier_outputs_unchanged(mixer):
    model = tiny(mixer)
    ids = torch.randint(0, VOCAB, (2, LENGTH))
    for t in (0, 5, LENGTH - 1):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        before, after = model(ids), model(changed)
        torch.testing.assert_close(before[:, :t], after[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(before[:, t], after[:, t])


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_every_parameter_gets_a_finite_gradient(mixer):
    model = tiny(mixer).train()
    ids = torch.randint(0, VOCAB, (2, LENGTH))
    torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:  # not frozen tables such as BaseConv's positional table z
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_blocks_follow_the_mixers_default_state_mixer():
    assert tiny("attention").components == [
        "block_input", "block_output", "mixer_input", "mixer_output", "mlp_input", "mlp_output"
    ]
    assert "mlp_input" not in tiny("mamba").components
    assert tiny("attention", state_mixer="glu").layers[0].mlp is not None


def test_positional_embedding_can_be_switched_off():
    assert tiny("attention", pos_embed=False).pos_embed is None


def test_checkpoint_round_trip(tmp_path):
    model = tiny("mamba")
    save_checkpoint(tmp_path / "step3.pt", model, step=3, extra={"run": "x"})
    loaded, info = load_checkpoint(tmp_path / "step3.pt")
    ids = torch.randint(0, VOCAB, (2, LENGTH))
    torch.testing.assert_close(loaded(ids), model(ids))
    assert info["step"] == 3 and info["extra"] == {"run": "x"}


def test_corrupt_or_missing_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "step1.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="step1.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_interventions_run_on_every_mixer_and_patching_the_last_block_restores_the_clean_answer(mixer):
    from tinylang.evaluation import run_interventions
    from tinylang.languages import parse_language_config
    from tinylang.languages.base import make_language
    from tinylang.languages.dataset import to_tensors

    language = make_language(parse_language_config(
        {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "splits": {"train": 6}}
    ))
    tensors = to_tensors(language.generate()["train"], mask_nonquery=True)
    model = build_model(ModelConfig(mixer=mixer, d_model=16, n_layers=2), len(language.vocabulary()), 16).eval()
    table = run_interventions(model, tensors, language.token_classes(), batch_size=3)
    wide = table[table.layer >= 0].pivot_table(index=["example", "corrupted", "layer", "component", "position"],
                             columns="metric", values="value").reset_index()
    reference = table[table.layer == -1].pivot_table(index=["example", "corrupted"], columns="metric",
                                                      values="value").reset_index()
    last = wide[(wide.layer == 1) & (wide.component == "block_output") & (wide.position == "query_item")]
    merged = last.merge(reference, on=["example", "corrupted"])
    assert len(merged) == 2 * len(tensors)
    assert (merged.p_patched - merged.p_clean).abs().max() < 1e-5


@pytest.mark.parametrize(
    # chance is 1/8; with the paper's init and tied head these reach 0.395, 0.805, 0.225, 0.805 in 400 steps
    "mixer, lr, floor",
    [("attention", 3e-3, 0.3), ("mamba", 1e-2, 0.5), ("mamba_without_conv", 1e-2, 0.18), ("mamba_conv1d", 1e-2, 0.5)],
)
def test_attention_and_mamba_variants_learn_a_tiny_ar_task(tiny_ar, tmp_path, mixer, lr, floor):
    assert held_out_accuracy(tiny_ar, tmp_path, mixer, steps=400, lr=lr, warmup_steps=20) > floor


def test_mamba_logs_which_path_it_took(caplog):
    import logging

    cls = MIXERS.get("mamba")
    mixer = cls(16, cls.Options(), layer_idx=3)
    with caplog.at_level(logging.INFO, logger="tinylang.kernels"):
        mixer(torch.randn(1, 5, 16))
        mixer(torch.randn(1, 5, 16))
    assert caplog.text.count("mamba (layer 3): pure-PyTorch reference") == 1  # once, on the CPU


# -- the mixer contracts ---------------------------------------------------------------------


def _layers(name: str) -> list[torch.nn.Module]:
    """Layers 0 and 1 of ``name`` at width 16 in float64 (hybrids differ by layer)."""
    cls = MIXERS.get(name)
    torch.manual_seed(0)
    return [cls(16, cls.Options(), layer_idx=i).double().eval() for i in (0, 1)]


@pytest.mark.parametrize("name", MIXERS.names())
def test_recurrent_mixers_agree_in_every_form(name):
    """Where a layer has a recurrent form, ``forward``, ``forward_with_state`` over two segments
    and ``step`` token by token compute the same; elsewhere the state methods refuse."""
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    for layer in _layers(name):
        if not has_recurrence(layer):
            assert describe.recurrent_state_size(layer) is None
            if isinstance(layer, RecurrentMixer):
                with pytest.raises(RecurrenceUnavailable):
                    layer.forward_with_state(x)
            continue
        with torch.no_grad():
            whole = layer(x)
            first, state = layer.forward_with_state(x[:, :4])
            second, state = layer.forward_with_state(x[:, 4:], state)
            stepped, stepped_state = layer.step_through(x)
        torch.testing.assert_close(torch.cat([first, second], 1), whole)
        torch.testing.assert_close(stepped, whole)
        for a, b in zip(state, stepped_state, strict=True):
            torch.testing.assert_close(a, b)
        assert describe.recurrent_state_size(layer) > 0


def test_which_mixers_have_a_recurrent_form_and_attention_probabilities():
    recurrent = {n for n in MIXERS.names() if any(has_recurrence(layer) for layer in _layers(n))}
    assert recurrent == set(MIXERS.names()) - {"attention", "hyena"}
    assert {n for n in MIXERS.names() if stores_attention(MIXERS.get(n))} == {"attention"}
