"""The Mamba selective-SSM mixer: shapes, causality, gradients, recurrent form, parameters."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch import nn

from tinylang.models.mixers import MIXERS
from tinylang.models.mixers.mamba import _SelectiveScan, selective_scan

D_MODEL = 16
VARIANTS = ["mamba", "mamba_without_conv", "mamba_conv1d"]


def build(name: str = "mamba", d_model: int = D_MODEL, **options):
    cls = MIXERS.get(name)
    torch.manual_seed(0)
    return cls(d_model, cls.Options(**options), layer_idx=0)


def perturb_dt(mixer) -> None:
    """Larger steps dt (so the state carries information) and outputs of order one
    (so that ``atol=1e-5`` is a tight comparison)."""
    with torch.no_grad():
        mixer.dt_proj.bias.add_(4.0)
        mixer.D.normal_()
        mixer.out_proj.weight.mul_(30.0)


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shape(name):
    mixer = build(name)
    x = torch.randn(3, 7, D_MODEL)
    assert mixer(x).shape == (3, 7, D_MODEL)
    assert MIXERS.get(name).default_state_mixer == "none"


@pytest.mark.parametrize("name", VARIANTS)
def test_causal(name):
    mixer = build(name)
    perturb_dt(mixer)
    torch.manual_seed(1)
    x = torch.randn(2, 9, D_MODEL)
    base = mixer(x).detach()
    for t in [0, 3, 8]:
        changed = x.clone()
        changed[:, t] += torch.randn(2, D_MODEL) * 3
        out = mixer(changed).detach()
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(out[:, t], base[:, t])


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_finite_for_every_parameter(name):
    mixer = build(name)
    x = torch.randn(4, 11, D_MODEL, requires_grad=True)
    mixer(x).square().mean().backward()
    for pname, param in mixer.named_parameters():
        if not param.requires_grad:  # mamba_without_conv's built-but-unused conv1d, as the paper's
            assert pname.startswith("conv1d.") and param.grad is None, pname
            continue
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_scan_matches_step_by_step(name):
    mixer = build(name)
    perturb_dt(mixer)
    x = torch.randn(3, 10, D_MODEL)
    with torch.no_grad():
        parallel = mixer(x)
        state = mixer.initial_state(3, x.device, x.dtype)
        steps = []
        for t in range(x.shape[1]):
            y_t, state = mixer.step(x[:, t], state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, dim=1), parallel, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_with_state_continues_a_sequence(name):
    mixer = build(name)
    perturb_dt(mixer)
    x = torch.randn(2, 12, D_MODEL)
    with torch.no_grad():
        whole = mixer(x)
        first, state = mixer.forward_with_state(x[:, :5])
        second, state = mixer.forward_with_state(x[:, 5:], state)
        # the returned state also drives the recurrent form
        y_t, _ = mixer.step(torch.zeros(2, D_MODEL), state)
        _, ref_state = mixer.forward_with_state(x)
        y_ref, _ = mixer.step(torch.zeros(2, D_MODEL), ref_state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_t, y_ref, atol=1e-5, rtol=1e-5)


def test_initial_state_shapes():
    with_conv, without = build("mamba"), build("mamba_without_conv")
    conv_state, ssm_state = with_conv.initial_state(5, torch.device("cpu"), torch.float32)
    assert conv_state.shape == (5, 2 * D_MODEL, 3) and ssm_state.shape == (5, 2 * D_MODEL, 16)
    conv_state, ssm_state = without.initial_state(5, torch.device("cpu"), torch.float32)
    assert conv_state.shape == (5, 2 * D_MODEL, 0) and ssm_state.shape == (5, 2 * D_MODEL, 16)


def test_parameter_names_and_shapes_match_mamba_ssm():
    d_model = 64
    d_inner, d_state, d_conv, dt_rank = 128, 16, 4, math.ceil(64 / 16)
    shapes = {name: tuple(p.shape) for name, p in build("mamba", d_model).named_parameters()}
    assert shapes == {
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    # As the paper's MambaWithoutConv: the conv1d is built (here frozen) but never applied.
    unused = {name: p.requires_grad for name, p in build("mamba_without_conv", d_model).named_parameters()}
    assert set(unused) == set(shapes) and not unused["conv1d.weight"] and not unused["conv1d.bias"]
    no_conv = {name for name, _ in build("mamba_without_conv", d_model, unused_conv=False).named_parameters()}
    assert no_conv == set(shapes) - {"conv1d.weight", "conv1d.bias"}
    assert not hasattr(build("mamba", d_model, conv="none"), "conv1d")
    with_bias = {name for name, _ in build("mamba", d_model, bias=True, conv_bias=False).named_parameters()}
    assert with_bias == set(shapes) - {"conv1d.bias"} | {"in_proj.bias", "out_proj.bias"}


def test_initialisation():
    mixer = build("mamba", 64, dt_rank=8, d_state=4)
    expected_A = torch.arange(1, 5, dtype=torch.float32).repeat(128, 1)
    torch.testing.assert_close(torch.exp(mixer.A_log), expected_A)
    torch.testing.assert_close(mixer.D.detach(), torch.ones(128))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias.detach())
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert mixer.dt_proj.weight.abs().max() <= 8**-0.5
    conv = mixer.conv1d
    assert isinstance(conv, nn.Conv1d) and conv.groups == 128 and conv.kernel_size == (4,)


def test_options_validation():
    options = MIXERS.get("mamba").Options
    assert options().dt_rank == "auto"
    assert MIXERS.get("mamba_without_conv").Options().conv == "none"
    for bad in [{"d_sate": 8}, {"dt_rank": "big"}, {"conv": "dilated"}, {"dt_min": 0.5}]:
        with pytest.raises(pydantic.ValidationError):
            options(**bad)
    with pytest.raises(pydantic.ValidationError):
        MIXERS.get("mamba_without_conv").Options(unknown=1)


def test_conv_act_hook_sees_short_conv_output():
    mixer = build("mamba")
    seen = []
    mixer.conv_act.register_forward_hook(lambda mod, inp, out: seen.append(out))
    mixer(torch.randn(2, 6, D_MODEL))
    assert seen and seen[0].shape == (2, 6, 2 * D_MODEL)


def _reference_scan(x, dt, A, B, C, D):
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1], dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])
    return torch.stack(ys, dim=1)


def test_selective_scan_matches_reference_and_gradcheck():
    torch.manual_seed(0)
    batch, length, d, n = 2, 6, 3, 4
    f64 = dict(dtype=torch.float64)
    x, B, C = torch.randn(batch, length, d, **f64), torch.randn(batch, length, n, **f64), torch.randn(batch, length, n, **f64)
    dt, A, D = torch.rand(batch, length, d, **f64), -torch.rand(d, n, **f64) * 3, torch.randn(d, **f64)
    y, _ = selective_scan(x, dt, A, B, C, D)
    torch.testing.assert_close(y, _reference_scan(x, dt, A, B, C, D))
    inputs = (
        dt.transpose(0, 1).contiguous(),
        A,
        (dt * x).transpose(0, 1).contiguous(),
        B.transpose(0, 1).contiguous(),
        C.transpose(0, 1).contiguous(),
        torch.randn(batch, d, n, **f64),
    )
    inputs = tuple(t.clone().requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(_SelectiveScan.apply, inputs)


# -- the convolution ablations: kernel size 1 and a plain nn.Conv1d ----------------------------


def test_kernel_size_one_conv_matches_step_and_continues():
    mixer = build("mamba", d_conv=1)
    perturb_dt(mixer)
    assert mixer.conv1d.kernel_size == (1,)
    conv_state, ssm_state = mixer.initial_state(2)
    assert conv_state.shape == (2, 2 * D_MODEL, 0) and ssm_state.shape == (2, 2 * D_MODEL, 16)
    x = torch.randn(2, 8, D_MODEL)
    with torch.no_grad():
        parallel = mixer(x)
        state, steps = (conv_state, ssm_state), []
        for t in range(x.shape[1]):
            y_t, state = mixer.step(x[:, t], state)
            steps.append(y_t)
        first, mid = mixer.forward_with_state(x[:, :3])
        second, end = mixer.forward_with_state(x[:, 3:], mid)
        # a kernel-size-1 convolution is a per-channel affine map: no mixing across time
        u = mixer.in_proj(x).chunk(2, dim=-1)[0]
        affine = u * mixer.conv1d.weight[:, 0, 0] + mixer.conv1d.bias
        seen = []
        handle = mixer.conv_act.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
        mixer(x)
        handle.remove()
    torch.testing.assert_close(torch.stack(steps, dim=1), parallel, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([first, second], dim=1), parallel, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(end[1], state[1], atol=1e-5, rtol=1e-5)
    assert end[0].shape == (2, 2 * D_MODEL, 0)
    torch.testing.assert_close(seen[0], affine)


def test_conv1d_variant_is_mamba_with_a_plain_conv():
    options = MIXERS.get("mamba_conv1d").Options
    assert options().conv_impl == "torch" and options().conv == "causal"
    assert MIXERS.get("mamba").Options().conv_impl == "auto"
    MIXERS.get("mamba").Options(conv_impl="torch")
    for bad in [{"conv_impl": "auto"}, {"conv": "none"}, {"conv_impl": "fused"}]:
        with pytest.raises(pydantic.ValidationError):
            options(**bad)
    plain, reference = build("mamba_conv1d", 64), build("mamba", 64)
    assert isinstance(plain.conv1d, torch.nn.Conv1d)
    assert {n: p.shape for n, p in plain.named_parameters()} == {n: p.shape for n, p in reference.named_parameters()}
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(plain(x), reference(x))  # same seed, same computation on CPU


@pytest.mark.parametrize("d_conv", [1, 4])
def test_state_after_a_sequence_shorter_than_the_kernel(d_conv):
    mixer = build("mamba", d_conv=d_conv)
    perturb_dt(mixer)
    x = torch.randn(2, 2, D_MODEL)
    with torch.no_grad():
        _, state = mixer.forward_with_state(x)
        stepped = mixer.initial_state(2)
        for t in range(x.shape[1]):
            _, stepped = mixer.step(x[:, t], stepped)
    torch.testing.assert_close(state[0], stepped[0])
    torch.testing.assert_close(state[1], stepped[1], atol=1e-5, rtol=1e-5)
