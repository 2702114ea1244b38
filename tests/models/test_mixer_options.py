"""The built-in mixers' options (``tinylang.models.mixers.options``) say what their classes do:
planning reads the options alone, without importing the classes or torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinylang.models import MIXERS, ModelConfig
from tinylang.models.mixers import mixer_spec, stores_attention
from tinylang.models.mixers.options import BUILT_IN_MIXERS


@pytest.mark.parametrize("name", sorted(BUILT_IN_MIXERS))
def test_a_built_in_mixers_options_agree_with_its_class(name):
    module, options = BUILT_IN_MIXERS[name]
    cls = MIXERS.get(name)
    assert cls.__module__ == f"tinylang.models.mixers.{module}"
    assert cls.Options is options
    assert cls.default_state_mixer == options.default_state_mixer
    assert stores_attention(cls) == options.stores_attention


def test_every_registered_mixer_is_a_built_in_one():
    assert set(MIXERS.names()) == set(BUILT_IN_MIXERS)


def test_an_outside_mixer_is_described_by_its_class(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "fixtures"))
    monkeypatch.setattr(MIXERS, "_entries", dict(MIXERS._entries))  # the outside name is not left registered
    spec = mixer_spec("my_extension:CausalMean")
    assert spec.options.__name__ == "CausalMeanOptions" and spec.default_state_mixer == "mlp"
    assert not spec.stores_attention


@pytest.mark.parametrize("mixer, args, d_model, problem", [
    ("attention", {"n_heads": 3}, 16, "n_heads"),
    ("based", {"n_heads": 3}, 16, "n_heads"),
    ("deltanet", {"n_heads": 3}, 16, "n_heads"),
    ("h3", {"head_dim": 3}, 16, "head_dim"),
    ("mamba2", {"headdim": 7}, 16, "headdim"),
    ("base_conv", {"kernel_size": [3]}, 16, "no entry for layer 1"),
])
def test_a_shape_the_options_cannot_build_is_refused_at_validation(mixer, args, d_model, problem):
    with pytest.raises(ValueError, match=problem):
        ModelConfig(mixer=mixer, d_model=d_model, n_layers=2, mixer_args=args)
