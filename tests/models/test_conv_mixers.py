"""The convolutional mixers (BaseConv, Hyena, H3) and their causal convolutions."""

from __future__ import annotations

import pydantic
import pytest
import torch
from conftest import TINY_AR_CHANCE, held_out_accuracy

from tinylang.models import MIXERS, ModelConfig
from tinylang.models.mixers._conv import (
    FFT_MIN_LENGTH,
    causal_conv,
    direct_causal_conv,
    fft_causal_conv,
    toeplitz_causal_conv,
)
from tinylang.models.mixers._shortconv import ShortConv

CONV_MIXERS = ["base_conv", "hyena", "h3"]
SHORT, LONG = 12, FFT_MIN_LENGTH + 36  # below / above the FFT threshold


def mixer(name: str, d_model: int = 16, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    return cls(d_model, cls.Options(**options)).eval()


# -- convolution helpers -------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 5, SHORT, LONG])
@pytest.mark.parametrize("taps", [3, 40, 300])
def test_all_convolutions_agree_with_a_loop(length, taps):
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, 4, length, dtype=torch.float64), torch.randn(4, taps, dtype=torch.float64)
    expected = torch.zeros_like(u)
    for t in range(length):
        for j in range(min(t + 1, taps)):
            expected[..., t] += k[:, j] * u[..., t - j]
    torch.testing.assert_close(causal_conv(u, k), expected)
    torch.testing.assert_close(toeplitz_causal_conv(u, k), expected)
    torch.testing.assert_close(direct_causal_conv(u, k), expected)
    padded = torch.nn.functional.pad(k, (0, max(0, length - taps)))[:, :length]
    torch.testing.assert_close(fft_causal_conv(u, padded), expected)


def test_fft_convolution_does_not_wrap_around():
    u = torch.zeros(1, 1, LONG)
    u[..., -1] = 1.0  # an impulse at the last position
    y = fft_causal_conv(u, torch.ones(1, LONG))
    assert y[..., :-1].abs().max() < 1e-6 and torch.isclose(y[..., -1], torch.tensor(1.0))


# -- the short convolution (shared with Based and DeltaNet) ----------------------------------


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("activation", [False, True])
def test_short_conv_agrees_with_a_loop_and_its_recurrence(kernel_size, activation):
    torch.manual_seed(0)
    conv = ShortConv(4, kernel_size, activation=activation).double()
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    state = torch.randn(2, 4, kernel_size - 1, dtype=torch.float64)
    w, b = conv.weight[:, 0], conv.bias  # (C, K), the last tap on the current token
    full = torch.cat([state, x.transpose(1, 2)], dim=-1)
    expected = torch.stack([
        b + sum(w[:, j] * full[..., t + j] for j in range(kernel_size)) for t in range(9)
    ], dim=1)
    expected = torch.nn.functional.silu(expected) if activation else expected
    y, new_state = conv(x, state)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(new_state, full[..., 9:])
    steps, s = [], state
    for t in range(9):
        y_t, s = conv.step(x[:, t], s)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), expected)
    torch.testing.assert_close(s, new_state)
    y0, _ = conv(x)  # no state: zeros before the sequence
    torch.testing.assert_close(y0, conv(x, torch.zeros_like(state))[0])


def test_short_conv_zero_bias_init():
    torch.manual_seed(0)
    taps = torch.empty(6, 3).uniform_(-3**-0.5, 3**-0.5)  # newest tap first, as drawn
    torch.manual_seed(0)
    conv = ShortConv(6, 3, init="zero_bias")
    torch.testing.assert_close(conv.weight[:, 0], taps.flip(-1))
    assert conv.weight.shape == (6, 1, 3) and not conv.bias.any()


def _old_layout(state: dict, prefix: str, layout: str) -> dict:
    """``state`` with the short filter at ``prefix`` stored as an earlier version stored it."""
    old = dict(state)
    weight, bias = old.pop(prefix + "weight"), old.pop(prefix + "bias")
    if layout == "taps":  # before the merge into ShortConv: (C, K), newest tap first
        old[prefix + "weight"], old[prefix + "bias"] = weight[:, 0].flip(-1), bias
    else:  # ShortConv wrapping an nn.Conv1d
        old[prefix + "conv.weight"], old[prefix + "conv.bias"] = weight, bias
    return old


@pytest.mark.parametrize("layout", ["taps", "wrapped"])
@pytest.mark.parametrize("name, options, prefix", [
    ("hyena", {}, "short_filter."), ("base_conv", {"kernel_size": 3}, "conv."),
])
def test_checkpoints_with_an_old_short_filter_layout_load(name, options, prefix, layout):
    """Earlier versions stored the short filter as ``weight`` ``(C, K)``, newest tap first, and
    ``bias``, then as ``conv.weight`` ``(C, 1, K)``/``conv.bias``; both load."""
    model = mixer(name, **options)
    fresh = MIXERS.get(name)(16, MIXERS.get(name).Options(**options)).eval()
    fresh.load_state_dict(_old_layout(model.state_dict(), prefix, layout))
    x = torch.randn(2, SHORT, 16)
    torch.testing.assert_close(fresh(x), model(x))


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONV_MIXERS)
def test_options_reject_unknown_keys(name):
    with pytest.raises(pydantic.ValidationError):
        MIXERS.get(name).Options(not_an_option=1)
    with pytest.raises(ValueError, match="not_an_option"):
        ModelConfig(mixer=name, mixer_args={"not_an_option": 1})


@pytest.mark.parametrize("name, options", [
    ("hyena", {"emb_dim": 4}), ("hyena", {"order": 0}), ("base_conv", {"kernel_size": 0}),
    ("h3", {"d_state": 7}), ("h3", {"head_dim": 0}),
])
def test_options_reject_bad_values(name, options):
    with pytest.raises(pydantic.ValidationError):
        MIXERS.get(name).Options(**options)


def test_h3_head_dim_must_divide_d_model():
    with pytest.raises(ValueError, match="divisible"):
        mixer("h3", d_model=16, head_dim=3)


# -- forward --------------------------------------------------------------------------------

VARIANTS = [
    ("base_conv", {}), ("base_conv", {"kernel_size": 4}),  # layer 0: the short filter
    ("base_conv", {"kernel_size": -1}),  # the implicit long filter
    ("base_conv", {"kernel_size": -1, "l_max": 16}),  # sequences longer than the long filter
    ("base_conv", {"kernel_size": -1, "long_conv": "explicit", "out_proj": True, "identity_skips": False}),
    ("hyena", {}), ("hyena", {"operator": "alternating", "order": 3, "emb_dim": 5, "l_max": 16, "positions": "fixed"}),
    ("h3", {}), ("h3", {"head_dim": 4, "d_state": 8}),
]


@pytest.mark.parametrize("name, options", VARIANTS)
@pytest.mark.parametrize("length", [SHORT, LONG])
def test_outputs_are_finite_and_causal(name, options, length):
    model = mixer(name, **options)
    x = torch.randn(2, length, 16)
    y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    t = length // 2
    changed = x.clone()
    changed[:, t] += 1.0
    after = model(changed)
    torch.testing.assert_close(after[:, :t], y[:, :t], atol=1e-5, rtol=0)
    assert not torch.allclose(after[:, t], y[:, t])


@pytest.mark.parametrize("name", CONV_MIXERS)
def test_short_and_fft_paths_agree(name, monkeypatch):
    model = mixer(name)
    x = torch.randn(2, SHORT, 16)
    short = model(x)
    monkeypatch.setattr("tinylang.models.mixers._conv.FFT_MIN_LENGTH", 1)
    torch.testing.assert_close(model(x), short, atol=1e-5, rtol=1e-4)


# -- H3 recurrence ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("options", [{}, {"head_dim": 4, "d_state": 8}])
@pytest.mark.parametrize("length", [SHORT, LONG])
def test_h3_recurrent_form_matches_parallel_form(dtype, atol, options, length):
    model = mixer("h3", **options).to(dtype)
    with torch.no_grad():  # a non-trivial shift and decay
        model.log_dt.uniform_(-3, -1)
    x = torch.randn(3, length, 16, dtype=dtype)
    with torch.no_grad():
        parallel = model(x)
        state = model.initial_state(3)
        steps = []
        for t in range(length):
            y_t, state = model.step(x[:, t], state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), parallel, atol=atol, rtol=0)
    assert state[0].dtype == dtype and state[1].is_complex()


# -- learning -------------------------------------------------------------------------------

# With their default options the paper's Hyena and H3 reach 0.37-0.44 over training seeds 0-2 at
# 3e-3; at 1e-2 seed 1 ends at 0.12-0.17 (seed 0 passes there only narrowly).
LEARNING_RATES = {"hyena": 3e-3, "h3": 3e-3}


@pytest.mark.parametrize("name, options, floor", [
    ("base_conv", {}, 0.3), ("hyena", {}, 0.3), ("h3", {}, 0.3), ("h3", {"head_dim": 8}, 0.6),
], ids=["base_conv", "hyena", "h3", "h3_head_dim8"])
def test_learns_associative_recall(tiny_ar, tmp_path, name, options, floor):
    accuracy = held_out_accuracy(tiny_ar, tmp_path, name, steps=300, lr=LEARNING_RATES.get(name, 1e-2), mixer_args=options)
    assert accuracy > max(floor, 2 * TINY_AR_CHANCE), accuracy
