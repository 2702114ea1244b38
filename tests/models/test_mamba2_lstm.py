"""The Mamba-2 (SSD) and LSTM mixers: options, parameters, parallel vs recurrent forms, training."""

from __future__ import annotations

import pydantic
import pytest
import torch
from conftest import TINY_AR_CHANCE, held_out_accuracy

from tinylang.models import ModelConfig
from tinylang.models.mixers import MIXERS
from tinylang.models.mixers import mamba2 as mamba2_module
from tinylang.models.mixers.mamba2 import RMSNormGated, segsum, ssd_chunked, ssd_sequential

D_MODEL = 16
F64 = dict(dtype=torch.float64)


def build(name: str, d_model: int = D_MODEL, dtype=torch.float32, **options):
    cls = MIXERS.get(name)
    torch.manual_seed(0)
    return cls(d_model, cls.Options(**options), layer_idx=0).to(dtype)


def perturb(mixer) -> None:
    """Larger steps dt (so the state carries information across many tokens) and a random D."""
    if hasattr(mixer, "dt_bias"):
        with torch.no_grad():
            mixer.dt_bias.add_(2.0)
            mixer.D.normal_()
            mixer.conv1d.weight.normal_()


# -- options and parameters ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mamba2", "lstm"])
def test_options_reject_unknown_keys(name):
    options = MIXERS.get(name).Options
    options()
    with pytest.raises(pydantic.ValidationError):
        options(d_sate=8)
    with pytest.raises(ValueError, match=r"mixer_args: unknown key\(s\) .nope."):
        ModelConfig(mixer=name, mixer_args={"nope": 1})
    assert MIXERS.get(name).default_state_mixer == "none"


def test_mamba2_options_validation():
    options = MIXERS.get("mamba2").Options
    assert options().chunk_size == 64 and options().ngroups == 1 and options().expand == 2
    for bad in [{"dt_min": 0.5}, {"chunk_size": 0}, {"headdim": 0}, {"A_init_min": 20.0}]:
        with pytest.raises(pydantic.ValidationError):
            options(**bad)
    with pytest.raises(ValueError, match="headdim"):
        build("mamba2", headdim=5)
    with pytest.raises(ValueError, match="ngroups"):
        build("mamba2", headdim=16, ngroups=3)  # 2 heads


def test_mamba2_parameter_names_and_shapes_match_mamba_ssm():
    d_model, d_state, headdim, d_conv = 64, 16, 16, 4
    d_inner, nheads = 128, 8
    mixer = build("mamba2", d_model, d_state=d_state, headdim=headdim)
    shapes = {name: tuple(p.shape) for name, p in mixer.named_parameters()}
    assert shapes == {
        "in_proj.weight": (2 * d_inner + 2 * d_state + nheads, d_model),
        "conv1d.weight": (d_inner + 2 * d_state, 1, d_conv),
        "conv1d.bias": (d_inner + 2 * d_state,),
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (nheads,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    assert -torch.exp(mixer.A_log).max() <= -1 and -torch.exp(mixer.A_log).min() >= -16
    dt = torch.nn.functional.softplus(mixer.dt_bias.detach())
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    with_groups = build("mamba2", d_model, d_state=d_state, headdim=headdim, ngroups=2, bias=True)
    assert with_groups.in_proj.weight.shape == (2 * d_inner + 4 * d_state + nheads, d_model)
    assert with_groups.in_proj.bias is not None and with_groups.out_proj.bias is not None


def test_lstm_parameters_and_state():
    mixer = build("lstm", 64)
    shapes = {name: tuple(p.shape) for name, p in mixer.named_parameters()}
    assert shapes == {
        "lstm.weight_ih_l0": (256, 64), "lstm.weight_hh_l0": (256, 64),
        "lstm.bias_ih_l0": (256,), "lstm.bias_hh_l0": (256,),
    }
    assert {name for name, _ in build("lstm", 64, bias=False).named_parameters()} == {
        "lstm.weight_ih_l0", "lstm.weight_hh_l0"
    }
    h, c = mixer.initial_state(3)
    assert h.shape == c.shape == (3, 64) and not h.abs().any() and not c.abs().any()


# -- the SSD algorithm ---------------------------------------------------------------------


def naive_ssd(x, dt, A, B, C, h0):
    """Independent reference: one head, one channel, one state entry at a time."""
    batch, length, nheads, headdim = x.shape
    y = torch.zeros_like(x)
    h = h0.clone()
    for t in range(length):
        for b in range(batch):
            for k in range(nheads):
                decay = torch.exp(dt[b, t, k] * A[k])
                h[b, k] = decay * h[b, k] + dt[b, t, k] * torch.outer(x[b, t, k], B[b, t, k])
                y[b, t, k] = h[b, k] @ C[b, t, k]
    return y, h


def ssd_inputs(batch=2, length=11, nheads=3, headdim=2, d_state=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, nheads, headdim, generator=g, **F64)
    dt = torch.rand(batch, length, nheads, generator=g, **F64) + 0.05
    A = -torch.rand(nheads, generator=g, **F64) * 4 - 0.1
    B = torch.randn(batch, length, nheads, d_state, generator=g, **F64)
    C = torch.randn(batch, length, nheads, d_state, generator=g, **F64)
    h0 = torch.randn(batch, nheads, headdim, d_state, generator=g, **F64)
    return x, dt, A, B, C, h0


def test_segsum():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], **F64)
    s = segsum(a)
    for i in range(4):
        for j in range(4):
            expected = a[j + 1 : i + 1].sum() if i >= j else float("-inf")
            assert s[i, j] == expected


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 11, 64])
@pytest.mark.parametrize("with_h0", [False, True])
def test_ssd_chunked_equals_sequential_and_naive(chunk_size, with_h0):
    x, dt, A, B, C, h0 = ssd_inputs()
    h0 = h0 if with_h0 else torch.zeros_like(h0)
    y_ref, h_ref = naive_ssd(x, dt, A, B, C, h0)
    y_seq, h_seq = ssd_sequential(x, dt, A, B, C, h0)
    y, h = ssd_chunked(x, dt, A, B, C, chunk_size, h0 if with_h0 else None)
    torch.testing.assert_close(y_seq, y_ref)
    torch.testing.assert_close(h_seq, h_ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)


def test_ssd_chunked_gradcheck():
    x, dt, A, B, C, h0 = (t.requires_grad_() for t in ssd_inputs(batch=1, length=5, nheads=2, headdim=2, d_state=2))
    assert torch.autograd.gradcheck(lambda *args: ssd_chunked(*args[:5], 2, args[5]), (x, dt, A, B, C, h0))


def test_gated_rmsnorm():
    norm = RMSNormGated(8, eps=1e-5, group_size=4).double()
    with torch.no_grad():
        norm.weight.normal_()
    x, z = torch.randn(3, 8, **F64), torch.randn(3, 8, **F64)
    gated = x * torch.nn.functional.silu(z)
    groups = gated.view(3, 2, 4)
    expected = (groups / (groups.square().mean(-1, keepdim=True) + 1e-5).sqrt()).view(3, 8) * norm.weight
    torch.testing.assert_close(norm(x, z), expected)


# -- mixers: parallel form == recurrent form -------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"chunk_size": 4}, {"chunk_size": 64}, {"chunk_size": 5, "ngroups": 2}, {"chunk_size": 3, "d_conv": 1}],
    ids=["chunk4", "chunk64", "ngroups2", "d_conv1"],
)
def test_mamba2_chunked_equals_sequential_equals_step(options, monkeypatch):
    mixer = build("mamba2", dtype=torch.float64, headdim=8, d_state=4, **options)
    perturb(mixer)
    x = torch.randn(3, 10, D_MODEL, **F64)  # 10 is not a multiple of 3, 4 or 64
    with torch.no_grad():
        chunked = mixer(x)
        steps, _ = mixer.step_through(x)
        calls = []

        def sequential_scan(x, dt, A, B, C, chunk_size, h0):
            calls.append(chunk_size)
            return ssd_sequential(x, dt, A, B, C, h0)

        monkeypatch.setattr(mamba2_module, "ssd_chunked", sequential_scan)
        sequential = mixer(x)
    assert calls == [options["chunk_size"]]
    torch.testing.assert_close(chunked, sequential, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(chunked, steps, atol=1e-10, rtol=1e-10)


def test_mamba2_float32_step_matches_forward():
    mixer = build("mamba2", chunk_size=4)
    perturb(mixer)
    x = torch.randn(2, 13, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(mixer.step_through(x)[0], mixer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mamba2", "lstm"])
def test_forward_with_state_continues_a_sequence(name):
    mixer = build(name, dtype=torch.float64, **({"chunk_size": 4} if name == "mamba2" else {}))
    perturb(mixer)
    x = torch.randn(2, 12, D_MODEL, **F64)
    with torch.no_grad():
        whole = mixer(x)
        first, state = mixer.forward_with_state(x[:, :5])
        second, state = mixer.forward_with_state(x[:, 5:], state)
        _, ref_state = mixer.step_through(x)
        short, short_state = mixer.forward_with_state(x[:, :2])  # shorter than the conv kernel
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    for got, ref in zip(state, ref_state):
        torch.testing.assert_close(got, ref)
    for got, ref in zip(short_state, mixer.step_through(x[:, :2])[1]):
        torch.testing.assert_close(got, ref)


def test_lstm_step_equals_forward():
    mixer = build("lstm")
    x = torch.randn(3, 9, D_MODEL)
    with torch.no_grad():
        steps, (h, c) = mixer.step_through(x)
        parallel, (h_ref, c_ref) = mixer.lstm(x)
    torch.testing.assert_close(steps, mixer(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(steps, parallel, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h, h_ref[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, c_ref[0], atol=1e-6, rtol=1e-5)
    no_bias = build("lstm", bias=False)
    with torch.no_grad():
        torch.testing.assert_close(no_bias.step_through(x)[0], no_bias(x), atol=1e-6, rtol=1e-5)


# -- a tiny associative-recall task ------------------------------------------------------------

# (steps, lr, minimum held-out accuracy); measured with the paper's init and tied head: mamba2
# 0.405 (0.935 with PyTorch's init, untied), lstm 0.415 (chance 0.125).
TRAINING = {"mamba2": (400, 1e-2, 0.3), "lstm": (400, 1e-2, 0.3)}


@pytest.mark.parametrize("mixer", sorted(TRAINING))
def test_tiny_model_learns_associative_recall(mixer, tiny_ar, tmp_path):
    steps, lr, minimum = TRAINING[mixer]
    accuracy = held_out_accuracy(tiny_ar, tmp_path, mixer, steps=steps, lr=lr)
    assert accuracy > max(minimum, 2 * TINY_AR_CHANCE), accuracy
