"""BaseConv and Based as the paper's code (zoology) builds them: layer layout, parameter counts,
the equations on tiny inputs, and the recurrent forms where they exist."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch import nn

from tinylang.models import MIXERS, ModelConfig, build_model
from tinylang.models.describe import describe_model
from tinylang.models.mixers import RecurrenceUnavailable, has_recurrence
from tinylang.models.mixers._implicit_conv import ImplicitLongConv, positional_table
from tinylang.models.mixers._shortconv import ShortConv
from tinylang.models.mixers.base_conv import BaseConv, ExplicitLongConv
from tinylang.models.mixers.based import Based, TaylorLinearAttention

# Per-layer parameter counts of the original modules, measured by building them in a CPU venv
# (zoology at eba3f43 with the wiring of tinylang/model/zoology.py: l_max 1024, bias False, 1 head;
# wandb and pandas mocked out) and summing ``p.numel()`` over ``module.parameters()``:
# ``BaseConv(d, l_max=1024, kernel_size=[3, -1, 3, -1], layer_idx=i)`` and
# ``Hybrid(d, configs=[BaseConv k=3, Based f=8 taylor_exp quadratic], layer_idx=i)``.
# The long layers include zoology's frozen positional table z (1 x 1024 x 3 = 3072, not trained).
ORIGINAL_COUNTS = {
    ("base_conv", 16): [336, 3680, 336, 3680],
    ("base_conv", 64): [4416, 8384, 4416, 8384],
    ("based", 16): [336, 768, 336, 768],
    ("based", 64): [4416, 9216, 4416, 9216],
}
ORIGINAL_TRAINABLE_LONG = {16: 608, 64: 5312}  # base_conv layers 1, 3 without z


def layer(name: str, layer_idx: int, d_model: int = 16, dtype=torch.float64, **options) -> nn.Module:
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    return cls(d_model, cls.Options(**options), layer_idx).to(dtype).eval()


def count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def randomise(module: nn.Module, std: float = 0.5) -> None:
    """Non-trivial weights (biases included) so that every term of the equations shows."""
    with torch.no_grad():
        for param in module.parameters():
            if param.requires_grad:
                param.normal_(0, std)


# -- layout ----------------------------------------------------------------------------------


def test_base_conv_layers_alternate_short_and_implicit_long_filters():
    kinds = [layer("base_conv", i).conv for i in range(4)]
    for i in (0, 2):
        assert isinstance(kinds[i], ShortConv) and isinstance(kinds[i], nn.Conv1d)
        assert kinds[i].weight.shape == (16, 1, 3) and kinds[i].bias is not None
    for i in (1, 3):
        assert isinstance(kinds[i], ImplicitLongConv) and kinds[i].l_max == 1024
    assert layer("base_conv", 0).out_proj is None  # zoology's BaseConv has no output projection
    with pytest.raises(ValueError, match="no entry for layer 4"):
        layer("base_conv", 4)  # as in zoology: one entry per layer
    assert isinstance(layer("base_conv", 7, kernel_size=5).conv, ShortConv)  # an int: every layer


def test_a_one_layer_based_is_a_base_conv():
    model = build_model(ModelConfig(mixer="based", d_model=16, n_layers=1), 20, 8)
    based = model.layers[0].mixer
    assert isinstance(based.base_conv, BaseConv) and based.attention is None
    reference = layer("base_conv", 0, dtype=torch.float32, kernel_size=3)
    assert count(based) == count(reference) == 336
    assert [k.removeprefix("base_conv.") for k in based.state_dict()] == list(reference.state_dict())
    x = torch.randn(2, 7, 16)
    reference.load_state_dict(based.base_conv.state_dict())
    torch.testing.assert_close(based(x), reference(x))


def test_a_two_layer_based_alternates_base_conv_and_linear_attention():
    model = build_model(ModelConfig(mixer="based", d_model=16, n_layers=4), 20, 8)
    for i, block in enumerate(model.layers):
        mixer = block.mixer
        assert isinstance(mixer, Based)
        if i % 2 == 0:
            assert isinstance(mixer.base_conv, BaseConv) and mixer.attention is None
            assert isinstance(mixer.base_conv.conv, ShortConv) and mixer.base_conv.conv.width == 3
        else:
            assert mixer.base_conv is None and isinstance(mixer.attention, TaylorLinearAttention)
            att = mixer.attention
            assert (att.n_heads, att.feature_dim, att.eps) == (1, 8, 1e-12)
            assert all(getattr(att, n).bias is None for n in ("proj_q", "proj_k", "proj_v", "proj_o"))


def test_based_every_layer_layout_and_long_filter_option():
    both = layer("based", 1, layout="every_layer")
    assert isinstance(both.base_conv, BaseConv) and isinstance(both.attention, TaylorLinearAttention)
    assert layer("based", 0, layout="every_layer", short_conv=False).base_conv is None
    long = layer("based", 0, kernel_size=-1)  # the paper's based_long_only
    assert isinstance(long.base_conv.conv, ImplicitLongConv)


@pytest.mark.parametrize("name", ["base_conv", "based"])
@pytest.mark.parametrize("d_model", [16, 64])
def test_parameter_counts_per_layer_equal_the_originals(name, d_model):
    counts = [count(layer(name, i, d_model)) for i in range(4)]
    assert counts == ORIGINAL_COUNTS[name, d_model]
    if name == "base_conv":
        assert count(layer(name, 1, d_model), trainable_only=True) == ORIGINAL_TRAINABLE_LONG[d_model]


def test_the_positional_table_is_zoologys_and_frozen():
    z = layer("base_conv", 1, dtype=torch.float32).conv.z
    assert z.shape == (1024, 3) and not z.requires_grad
    j = torch.arange(1024, dtype=torch.float64)
    angle = 2 * math.pi * 1e-4 * j / 1024
    expected = torch.stack([j / 1023, angle.cos(), -angle.sin()], dim=-1)
    torch.testing.assert_close(z.double(), expected, atol=1e-6, rtol=0)
    wide = positional_table(6, emb_dim=5)  # 2 bands: frequencies 1e-4 and 1
    torch.testing.assert_close(wide[:, 2], (2 * math.pi * torch.arange(6) / 6).cos(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="odd"):
        positional_table(6, emb_dim=4)
    model = build_model(ModelConfig(mixer="base_conv", d_model=16, n_layers=2), 20, 8)  # zoology init
    torch.testing.assert_close(model.layers[1].mixer.conv.z, positional_table(1024), atol=0, rtol=0)


# -- the equations ---------------------------------------------------------------------------


def causal_conv_loop(u: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``y[:, t, c] = sum_j taps[c, j] u[:, t - j, c]`` (tap ``j``: ``j`` steps back)."""
    y = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for j in range(min(t + 1, taps.shape[1])):
            y[:, t] += taps[:, j] * u[:, t - j]
    return y


def test_short_base_conv_is_projection_times_conv_plus_u():
    mixer = layer("base_conv", 0, d_model=4)
    randomise(mixer)
    u = torch.randn(2, 6, 4, dtype=torch.float64)
    W, b = mixer.projection.weight, mixer.projection.bias
    w, b_conv = mixer.conv.weight[:, 0], mixer.conv.bias  # (C, 3), the last tap on the current token
    conv = causal_conv_loop(u, w.flip(-1)) + b_conv
    torch.testing.assert_close(mixer(u), (u @ W.T + b) * conv + u)


@pytest.mark.parametrize("length", [6, 70])  # below and above the FFT threshold
def test_long_base_conv_is_projection_times_implicit_conv_plus_u(length):
    mixer = layer("base_conv", 1, d_model=4, l_max=80)
    randomise(mixer)
    u = torch.randn(2, length, 4, dtype=torch.float64)
    mlp = mixer.conv.filter_mlp
    z = mixer.conv.z[:length]
    taps = (torch.relu(z @ mlp[0].weight.T + mlp[0].bias) @ mlp[2].weight.T + mlp[2].bias).T  # (C, L)
    long = causal_conv_loop(u, taps) + u  # zoology's fft_conv adds u
    W, b = mixer.projection.weight, mixer.projection.bias
    torch.testing.assert_close(mixer(u), (u @ W.T + b) * long + u)


def test_long_filter_is_zero_beyond_l_max():
    mixer = layer("base_conv", 1, l_max=4)
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    changed = x.clone()
    changed[:, 0] += 1.0
    torch.testing.assert_close(mixer(changed)[:, 4:], mixer(x)[:, 4:], atol=0, rtol=0)
    assert not torch.allclose(mixer(changed)[:, 3], mixer(x)[:, 3])


def test_our_variant_without_skips_with_an_explicit_filter_and_output_projection():
    mixer = layer("base_conv", 1, d_model=4, long_conv="explicit", out_proj=True, identity_skips=False, l_max=8)
    assert isinstance(mixer.conv, ExplicitLongConv)
    randomise(mixer)
    u = torch.randn(2, 6, 4, dtype=torch.float64)
    W, b = mixer.projection.weight, mixer.projection.bias
    conv = causal_conv_loop(u, mixer.conv.filter) + mixer.conv.bias
    expected = mixer.out_proj((u @ W.T + b) * conv)
    torch.testing.assert_close(mixer(u), expected)
    silu = layer("base_conv", 0, d_model=4, use_act=True)
    plain = layer("base_conv", 0, d_model=4)
    conv = plain.conv(u)[0]
    torch.testing.assert_close(silu(u), torch.nn.functional.silu(plain.projection(u)) * torch.nn.functional.silu(conv) + u)


def taylor_map(x: torch.Tensor, f: int) -> torch.Tensor:
    """zoology's TaylorExp: ``[1, x / f**(1/4), vec(x x^T) / (sqrt(2) sqrt(f))]``."""
    outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)
    return torch.cat([torch.ones_like(x[..., :1]), x / f**0.25, outer / (math.sqrt(2) * math.sqrt(f))], dim=-1)


@pytest.mark.parametrize("chunk_size", [64, 3])
def test_linear_attention_layer_is_the_quadratic_taylor_form(chunk_size):
    mixer = layer("based", 1, d_model=8, chunk_size=chunk_size)
    randomise(mixer.attention, std=0.3)
    att = mixer.attention
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    phi_q, phi_k = taylor_map(att.proj_q(x), 8), taylor_map(att.proj_k(x), 8)  # (B, L, 73), 1 head
    A = (phi_q @ phi_k.transpose(1, 2)).tril()
    expected = att.proj_o((A @ att.proj_v(x)) / (A.sum(-1, keepdim=True) + 1e-12))
    torch.testing.assert_close(mixer(x), expected)


# -- recurrent forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, layer_idx, options", [
    ("based", 1, {}), ("based", 1, {"chunk_size": 3, "n_heads": 2, "feature_dim": 4}),
    ("base_conv", 0, {}), ("base_conv", 2, {"kernel_size": [3, -1, 4]}),
])
def test_parallel_matches_recurrent_on_layers_with_a_recurrent_form(name, layer_idx, options):
    mixer = layer(name, layer_idx, **options)
    torch.manual_seed(1)
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    with torch.no_grad():
        parallel = mixer(x)
        stepped, last = mixer.step_through(x)
        first, state = mixer.forward_with_state(x[:, :4])
        second, state = mixer.forward_with_state(x[:, 4:], state)
    torch.testing.assert_close(stepped, parallel, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(torch.cat([first, second], 1), parallel, atol=1e-10, rtol=1e-10)
    for a, b in zip(state, last, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name, layer_idx, options", [
    ("base_conv", 1, {}), ("base_conv", 0, {"kernel_size": -1, "long_conv": "explicit"}),
    ("based", 0, {"kernel_size": -1}),
])
def test_long_filter_layers_have_no_recurrent_form(name, layer_idx, options):
    """The long filter is a finite impulse response as long as ``l_max``: no compact state, so no
    ``step``; the state methods say so, and ``describe_model`` reports no state size."""
    mixer = layer(name, layer_idx, **options)
    assert not has_recurrence(mixer) and "long filter" in mixer.recurrence_missing()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    for call in (lambda: mixer.initial_state(2), lambda: mixer.step(x[:, 0], ()),
                 lambda: mixer.forward_with_state(x)):
        with pytest.raises(RecurrenceUnavailable, match=rf"\(layer {layer_idx}\) has no recurrent form: a long filter"):
            call()
    assert mixer(x).shape == x.shape  # the parallel form still runs
    model = build_model(ModelConfig(mixer="base_conv", d_model=16, n_layers=2), 20, 8)
    table = describe_model(model)
    sizes = table[table.part.str.startswith("mixer")].state_size
    assert sizes.iloc[0] == 16 * 2 and sizes.isna().tolist() == [False, True]  # short, then long


def test_state_sizes_per_layer():
    assert [tuple(s.shape) for s in layer("based", 0, 64).initial_state(1)] == [(1, 64, 2)]
    assert [tuple(s.shape) for s in layer("based", 1, 64).initial_state(1)] == [(1, 1, 73, 64), (1, 1, 73)]
    assert [tuple(s.shape) for s in layer("based", 1, 64, layout="every_layer").initial_state(1)] == [
        (1, 64, 2), (1, 1, 73, 64), (1, 1, 73)]


# -- gradients and options -------------------------------------------------------------------


@pytest.mark.parametrize("name, layer_idx", [("base_conv", 0), ("base_conv", 1), ("based", 0), ("based", 1)])
def test_every_trained_parameter_gets_a_gradient_and_z_none(name, layer_idx):
    mixer = layer(name, layer_idx, dtype=torch.float32).train()
    x = torch.randn(2, 9, 16, requires_grad=True)
    mixer(x).square().mean().backward()
    for pname, param in mixer.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, pname
        else:
            assert pname == "conv.z" and param.grad is None


@pytest.mark.parametrize("name, options", [
    ("base_conv", {"kernel_size": 0}), ("base_conv", {"kernel_size": -2}), ("base_conv", {"kernel_size": []}),
    ("base_conv", {"kernel_size": [3, 0]}), ("base_conv", {"long_conv": "fft"}), ("base_conv", {"l_max": 0}),
    ("based", {"layout": "alternate"}), ("based", {"kernel_size": -3}),
    ("based", {"short_conv": False}),  # the hybrid's even layers are the BaseConv
])
def test_options_reject_bad_values(name, options):
    with pytest.raises(pydantic.ValidationError):
        MIXERS.get(name).Options(**options)


def test_defaults_are_the_papers():
    base_conv, based = MIXERS.get("base_conv").Options(), MIXERS.get("based").Options()
    assert base_conv.kernel_size == [3, -1, 3, -1] and base_conv.l_max == 1024
    assert (base_conv.long_conv, base_conv.out_proj, base_conv.identity_skips, base_conv.use_act) == (
        "implicit", False, True, False)
    assert (based.layout, based.feature_dim, based.n_heads, based.kernel_size, based.eps) == (
        "hybrid", 8, 1, 3, 1e-12)
    assert MIXERS.get("base_conv").rescaled_projections == MIXERS.get("based").rescaled_projections == ()
