"""Registries answer registered names, 'module:attribute' paths and entry points alike."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tinylang.models import ModelConfig
from tinylang.models.mixers import MIXERS, Mixer
from tinylang.registry import Registry


@pytest.fixture
def outside_module(tmp_path, monkeypatch):
    """A module ``outside_mixers`` on sys.path holding a mixer and a non-mixer."""
    (tmp_path / "outside_mixers.py").write_text(textwrap.dedent("""
        from tinylang.models.mixers import Mixer

        class Identity(Mixer):
            def forward(self, x):
                return x

        NOT_A_MIXER = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("outside_mixers", None)


def test_a_path_names_a_class_outside_the_package(outside_module):
    config = ModelConfig(mixer="outside_mixers:Identity", d_model=8, n_layers=1)
    assert MIXERS.get(config.mixer).__name__ == "Identity"
    assert "outside_mixers:Identity" in MIXERS


@pytest.mark.parametrize("name, message", [
    ("outside_mixers:Missing", "module 'outside_mixers' has no attribute 'Missing'"),
    ("outside_mixers:NOT_A_MIXER", "is 3, not a subclass of tinylang.models.mixers.base.Mixer"),
    ("no_such_module:Identity", "cannot import module 'no_such_module'"),
    ("mamab", "unknown mixer 'mamab'; allowed: attention,"),
])
def test_a_bad_name_says_what_is_wrong(outside_module, name, message):
    with pytest.raises(ValueError, match="mixer") as raised:
        ModelConfig(mixer=name, d_model=8, n_layers=1)
    assert message in str(raised.value)
    assert name not in MIXERS


def test_an_installed_entry_point_is_a_name(tmp_path, monkeypatch, outside_module):
    dist = tmp_path / "outside_mixers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-mixers\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tinylang.test_mixers]\nidentity = outside_mixers:Identity\n")
    registry = Registry("mixer", base=Mixer, group="tinylang.test_mixers")
    assert registry.names() == ["identity"]
    assert registry.get("identity").__name__ == "Identity"
