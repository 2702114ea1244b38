"""Hyena and H3 are the layers of the paper's code (zoology's ``Hyena`` and ``H3``).

The parameter counts below were measured by building the originals (zoology at eba3f43,
``zoology.mixers.hyena.Hyena(d_model, l_max=1024, bias=False)`` and
``zoology.mixers.h3.H3(d_model, l_max=1024, d_state=1024, head_dim=2, bias=False)``, the wiring
of tinylang's ``zoology.py``) on a CPU and summing ``p.numel()`` over ``parameters()``.
"""

from __future__ import annotations

import math

import pytest
import torch

from tinylang.models import MIXERS, ModelConfig, build_model
from tinylang.models.mixers.hyena import positional_features

ORIGINAL_COUNTS = {  # (mixer, d_model) -> parameters of one original layer
    ("hyena", 16): 14_032, ("hyena", 64): 33_280,
    ("h3", 16): 58_464, ("h3", 64): 246_144,
}


def build(name: str, d_model: int = 4, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    return cls(d_model, cls.Options(**options)).double().eval()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, d_model", list(ORIGINAL_COUNTS))
def test_parameter_counts_equal_the_originals(name, d_model):
    assert n_params(build(name, d_model)) == ORIGINAL_COUNTS[(name, d_model)]


def test_defaults_are_the_papers_settings():
    hyena, h3 = MIXERS.get("hyena").Options(), MIXERS.get("h3").Options()
    assert (hyena.operator, hyena.positions, hyena.l_max, hyena.bias) == ("zoology", "learned", 1024, False)
    assert (hyena.filter_order, hyena.short_filter, hyena.emb_dim) == (64, 3, 3)
    assert (h3.d_state, h3.head_dim, h3.l_max, h3.learned_B, h3.discretization) == (1024, 2, 1024, True, "bilinear")


# -- Hyena ------------------------------------------------------------------------------------


def direct_filter(f, length: int) -> torch.Tensor:
    """``(channels, L)``: the MLP on the trained table, times the exponential decay."""
    act = lambda x: torch.sin(f.act.freq * x)
    h = act(f.first(f.z[:length]))
    h = act(f.hidden[1](act(f.hidden[0](h))))
    h = f.last(h)
    t = torch.arange(length, dtype=h.dtype).unsqueeze(-1) / (f.l_max - 1)
    return (h * torch.exp(-t * f.decay_rates)).T


def direct_long_conv(z: torch.Tensor, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``(h * z)_t + skip ⊙ z_t`` by a loop, for ``z`` ``(B, d, L)``."""
    out = skip.unsqueeze(-1) * z
    for t in range(z.shape[-1]):
        for s in range(t + 1):
            out[..., t] = out[..., t] + h[:, t - s] * z[..., s]
    return out


def direct_hyena(model, x: torch.Tensor) -> torch.Tensor:
    d, length = model.d_model, x.shape[1]
    p = model.in_proj(x).transpose(1, 2)  # (B, streams, L)
    w, b = model.short_filter.weight[:, 0], model.short_filter.bias  # last tap: current token
    k = w.shape[-1]
    padded = torch.nn.functional.pad(p, (k - 1, 0))
    u = torch.stack([b + sum(w[:, j] * padded[..., t + j] for j in range(k)) for t in range(length)], -1)
    h = direct_filter(model.filter, length).view(model.n_long_convs, d, length)
    skip = model.filter_bias if model.use_bias else torch.zeros_like(model.filter_bias)
    if model.alternating:
        *gates, z = u.split(d, dim=1)
        for n, gate in enumerate(gates):
            z = gate * direct_long_conv(z, h[n], skip[n])
    else:
        x1, x2, v = u.split(d, dim=1)
        z = x2 * direct_long_conv(x1 * v, h[0], skip[0])
    return model.out_proj(z.transpose(1, 2))


@pytest.mark.parametrize("options", [{}, {"bias": True}, {"operator": "alternating", "bias": True}])
def test_hyena_equals_a_direct_recomputation(options):
    model = build("hyena", l_max=16, filter_order=8, **options)
    with torch.no_grad():  # a filter large enough to matter (the zoology init makes it tiny)
        for layer in [model.filter.first, *model.filter.hidden, model.filter.last]:
            layer.weight.normal_()
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), direct_hyena(model, x))


def test_hyena_positional_table_is_trained():
    model = build("hyena", l_max=16).train()
    z = dict(model.named_parameters())["filter.z"]
    assert z.shape == (16, 3) and z.requires_grad
    torch.testing.assert_close(z.detach(), positional_features(16, 3, 16).double())
    with torch.no_grad():  # the zoology init's tiny filter would make z's gradient vanish in float64 noise
        model.filter.last.weight.normal_()
    model(torch.randn(2, 5, 4, dtype=torch.float64)).square().sum().backward()
    assert z.grad[:5].abs().sum() > 0 and not z.grad[5:].any()  # only the rows the sequence reads


def test_hyena_without_bias_has_no_skip_term():
    model = build("hyena", l_max=16).train()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    y = model(x)
    y.sum().backward()
    assert not model.filter_bias.grad.any()  # in the graph (as 0 · b), never moved
    with torch.no_grad():
        model.filter_bias.normal_()
        torch.testing.assert_close(model(x), y)
        model.use_bias = True
        assert not torch.allclose(model(x), y)


def test_hyena_sequences_longer_than_l_max():
    x = torch.randn(1, 9, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="l_max"):
        build("hyena", l_max=8)(x)
    fixed = build("hyena", l_max=8, positions="fixed")
    assert "filter.z" not in dict(fixed.named_parameters()) and fixed(x).shape == x.shape


def test_hyena_filter_is_tiny_under_the_zoology_init():
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="hyena", d_model=16, n_layers=2), 20, 12)
    mixer = model.layers[0].mixer
    assert type(mixer).rescaled_projections == ("out_proj",)
    for layer in [mixer.filter.first, *mixer.filter.hidden, mixer.filter.last]:
        assert isinstance(layer, torch.nn.Linear) and abs(layer.weight.std().item() - 0.02) < 0.01
    assert mixer.filter(12).abs().max() < 1e-2


# -- H3 ---------------------------------------------------------------------------------------


def direct_h3(model, x: torch.Tensor) -> torch.Tensor:
    """H3 by its state-space recurrences, with the shift SSM as an explicit shift matrix."""
    batch, length, d = x.shape
    n, heads, dh = model.d_state, model.n_heads, model.head_dim
    q, k, v = model.q_proj(x), model.k_proj(x), model.v_proj(x)
    shift = torch.diag(torch.ones(n - 1, dtype=x.dtype), -1)  # x_t[i] = x_{t-1}[i-1]
    state = torch.zeros(batch, d, n, dtype=x.dtype)
    k_bar = torch.empty_like(k)
    for t in range(length):
        state = state @ shift.T + model.shift_B * k[:, t, :, None]
        k_bar[:, t] = (state * model.shift_C).sum(-1) + model.shift_D * k[:, t]
    dt = torch.exp(model.log_dt)[:, None]
    A = torch.complex(-torch.exp(model.A_re_log), model.A_im)
    B, C = torch.view_as_complex(model.B.contiguous()), torch.view_as_complex(model.C.contiguous())
    if model.zoh:
        A_bar, B_bar = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A * B
    else:
        A_bar, B_bar = (1 + dt * A / 2) / (1 - dt * A / 2), dt * B / (1 - dt * A / 2)
    y = torch.zeros(batch, length, d, dtype=x.dtype)
    for h in range(heads):
        ch = slice(h * dh, (h + 1) * dh)
        s = torch.zeros(batch, dh, dh, n // 2, dtype=A.dtype)
        for t in range(length):
            kv = k_bar[:, t, ch, None] * v[:, t, None, ch]  # (B, i, j)
            s = A_bar[h] * s + B_bar[h] * kv[..., None]
            out = 2 * (s * C[h]).sum(-1).real + model.D[h] * kv
            for j in range(dh):
                y[:, t, j * heads + h] = (q[:, t, ch] * out[:, :, j]).sum(-1)
    return model.output_linear(y)


@pytest.mark.parametrize("options", [{}, {"discretization": "zoh"}, {"learned_B": False}])
def test_h3_equals_a_direct_recomputation(options):
    model = build("h3", d_model=4, d_state=6, **options)
    with torch.no_grad():  # a learned B away from its initialisation, a non-trivial decay
        model.log_dt.uniform_(-2, -0.5)
        if model.shift_B.requires_grad:
            model.shift_B.normal_()
            model.B.normal_()
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), direct_h3(model, x))


def test_h3_learns_both_B_by_default():
    model = build("h3", d_model=4, d_state=6).train()
    params = dict(model.named_parameters())
    assert params["shift_B"].shape == (4, 6) and params["B"].shape == (2, 3, 2)
    model(torch.randn(2, 5, 4, dtype=torch.float64)).square().sum().backward()
    assert params["shift_B"].grad.abs().sum() > 0 and params["B"].grad.abs().sum() > 0
    fixed = build("h3", d_model=4, d_state=6, learned_B=False)
    assert {"shift_B", "B"}.isdisjoint(dict(fixed.named_parameters())) and {"shift_B", "B"} <= dict(fixed.named_buffers()).keys()


def test_h3_initialisation_is_the_originals():
    model = build("h3", d_model=64)
    n = 1024
    assert torch.equal(model.shift_B, torch.eye(n, dtype=torch.float64)[0].expand(64, n))
    assert model.shift_C.abs().max() <= 1 / math.sqrt(n)
    torch.testing.assert_close(torch.exp(model.A_re_log), torch.full((32, n // 2), 0.5, dtype=torch.float64))
    torch.testing.assert_close(model.A_im[0], math.pi * torch.arange(n // 2, dtype=torch.float64))
    assert torch.equal(model.B[..., 0], torch.ones(32, n // 2, dtype=torch.float64)) and not model.B[..., 1].any()
    dt = torch.exp(model.log_dt)
    assert (dt >= 1e-3).all() and (dt <= 1e-1).all()
    assert type(model).rescaled_projections == ()  # zoology's H3 names it output_linear
