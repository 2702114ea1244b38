"""The fused-kernel dispatch, on the CPU: the kernels are replaced by pure-PyTorch fakes that
follow their documented contracts, and ``kernels.fast_path_ok`` is made to accept CPU tensors.

What this checks is our side of each call (layouts, weight shape, bias, activation, scale,
state layout and dtype rules) and that gradients flow through the fused branch; whether the
real kernels meet their contracts is ``test_gpu_parity.py``'s job.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from tinylang.models import MIXERS, kernels
from tinylang.models.mixers._shortconv import ShortConv

# -- fakes -----------------------------------------------------------------------------------


class FakeCausalConv1d:
    """causal-conv1d's ``causal_conv1d_fn(x (B, C, L), weight (C, K), bias (C,), activation)``:
    ``y[..., t] = act(bias + sum_j weight[:, j] * x[..., t - K + 1 + j])``, for 2 <= K <= 4, in
    ``x``'s dtype (the weight's may differ)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, weight, bias=None, seq_idx=None, initial_states=None,
                 return_final_states=False, final_states_out=None, activation=None):
        self.calls += 1
        _, channels, length = x.shape
        assert x.stride(2) == 1 or x.stride(1) == 1, "x must be contiguous or channel-last"
        assert weight.dim() == 2 and weight.shape[0] == channels, f"weight must be (C, K), got {tuple(weight.shape)}"
        width = weight.shape[1]
        assert 2 <= width <= 4, "causal_conv1d only supports width between 2 and 4"
        if bias is not None:
            assert bias.shape == (channels,) and bias.dtype == weight.dtype
        assert activation in (None, "silu", "swish")
        assert seq_idx is None and initial_states is None and not return_final_states
        padded = F.pad(x, (width - 1, 0))
        y = sum(weight[:, j, None] * padded[..., j : j + length] for j in range(width))
        if bias is not None:
            y = y + bias[:, None]
        return (y if activation is None else F.silu(y)).to(x.dtype)


class FakeChunkDeltaRule:
    """fla's ``chunk_delta_rule``: ``q``, ``k`` ``(B, T, H, K)``, ``v`` ``(B, T, H, V)``, ``beta``
    ``(B, T, H)``, state ``S`` ``(B, H, K, V)``; per head ``S_t = S_{t-1} + k_t beta_t (v_t -
    S_{t-1}^T k_t)^T``, ``o_t = S_t^T (scale q_t)``, scale default ``K**-0.5``. Like the real
    kernel it refuses float32."""

    def __init__(self):
        self.calls = 0

    def __call__(self, q, k, v, beta, scale=None, initial_state=None, output_final_state=False,
                 use_qk_l2norm_in_kernel=False, cu_seqlens=None, **kwargs):
        self.calls += 1
        assert "head_first" not in kwargs and cu_seqlens is None
        assert q.dtype == k.dtype == v.dtype and q.dtype != torch.float32, "does not support float32"
        assert beta.dim() == 3 and beta.shape == q.shape[:3]
        batch, length, heads, dk = q.shape
        dv = v.shape[-1]
        assert k.shape == q.shape and v.shape == (batch, length, heads, dv)
        if use_qk_l2norm_in_kernel:
            q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        scale = dk**-0.5 if scale is None else scale
        S = q.new_zeros(batch, heads, dk, dv) if initial_state is None else initial_state.to(q.dtype)
        assert S.shape == (batch, heads, dk, dv), "state must be (B, H, K, V)"
        outs = []
        for t in range(length):
            k_t, v_t, b_t = k[:, t], v[:, t], beta[:, t, :, None]  # (B, H, .)
            error = v_t - torch.einsum("bhkv,bhk->bhv", S, k_t)
            S = S + k_t.unsqueeze(-1) * (b_t * error).unsqueeze(-2)
            outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
        return torch.stack(outs, dim=1), (S if output_final_state else None)


@pytest.fixture
def fake_conv(monkeypatch):
    fake = FakeCausalConv1d()
    monkeypatch.setattr(kernels, "causal_conv1d_fn", lambda: fake)
    monkeypatch.setattr(kernels, "fast_path_ok", lambda tensor: True)  # "on the GPU"
    return fake


@pytest.fixture
def fake_delta_rule(monkeypatch):
    fake = FakeChunkDeltaRule()
    monkeypatch.setattr(kernels, "chunk_delta_rule", lambda: fake)
    monkeypatch.setattr(kernels, "fast_path_ok", lambda tensor: True)
    # float64 stands in for bfloat16, so that the comparison can be tight.
    monkeypatch.setattr(kernels, "DELTA_RULE_DTYPES", (torch.float16, torch.bfloat16, torch.float64))
    return fake


def test_the_fakes_follow_the_documented_contracts():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 9, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    # causal-conv1d's README: equivalent to F.conv1d(x, w.unsqueeze(1), b, padding=K-1, groups=C)[..., :L].
    expected = F.silu(F.conv1d(x, w.unsqueeze(1), b, padding=2, groups=5)[..., :9])
    torch.testing.assert_close(FakeCausalConv1d()(x, w, b, activation="silu"), expected)
    # One step of the delta rule from S0: o = scale * (S0 + k beta (v - S0^T k)^T)^T q.
    q, k = torch.randn(1, 1, 1, 4, dtype=torch.float64), torch.randn(1, 1, 1, 4, dtype=torch.float64)
    f64 = torch.float64
    v, beta, S0 = torch.randn(1, 1, 1, 3, dtype=f64), torch.rand(1, 1, 1, dtype=f64), torch.randn(1, 1, 4, 3, dtype=f64)
    o, S = FakeChunkDeltaRule()(q, k, v, beta, scale=0.5, initial_state=S0, output_final_state=True)
    S1 = S0[0, 0] + beta[0, 0, 0] * torch.outer(k[0, 0, 0], v[0, 0, 0] - S0[0, 0].T @ k[0, 0, 0])
    torch.testing.assert_close(S[0, 0], S1)
    torch.testing.assert_close(o[0, 0, 0], 0.5 * S1.T @ q[0, 0, 0])


# -- comparing the two branches ----------------------------------------------------------------


def outputs_and_grads(module, x, fast: bool, forward=None):
    kernels.set_fast_path(module, fast)
    module.zero_grad()
    x.grad = None
    y = (forward or module)(x)
    y = y[0] if isinstance(y, tuple) else y
    y.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return y.detach(), x.grad.clone(), grads


def assert_branches_agree(module, x, forward=None):
    y_fast, gx_fast, g_fast = outputs_and_grads(module, x, True, forward)
    y_ref, gx_ref, g_ref = outputs_and_grads(module, x, False, forward)
    torch.testing.assert_close(y_fast, y_ref)
    torch.testing.assert_close(gx_fast, gx_ref)
    assert g_fast.keys() == g_ref.keys() and g_ref
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], msg=name)


def mixer(name, d_model=32, **options):
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    return cls(d_model, cls.Options(**options), layer_idx=2).double()


# -- the short convolution -------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("bias, activation", [(True, False), (False, True), (True, True)])
def test_short_conv_fast_branch_matches_the_reference(fake_conv, kernel_size, bias, activation):
    conv = ShortConv(6, kernel_size, bias=bias, activation=activation).double()
    with torch.no_grad():
        conv.weight.normal_()  # distinct taps, so a flipped filter would show
    x = torch.randn(2, 11, 6, dtype=torch.float64, requires_grad=True)
    assert_branches_agree(conv, x)
    assert fake_conv.calls == 1  # on the fast branch, not on the reference
    kernels.set_fast_path(conv, True)
    _, state_fast = conv(x)
    kernels.set_fast_path(conv, False)
    _, state_ref = conv(x)
    torch.testing.assert_close(state_fast, state_ref)


@pytest.mark.parametrize("length", [1, 2])
def test_short_conv_fast_branch_state_of_a_sequence_shorter_than_the_kernel(fake_conv, length):
    conv = ShortConv(4, 4).double()
    x = torch.randn(3, length, 4, dtype=torch.float64)
    _, fast = conv(x)
    conv.use_fast_path = False
    _, ref = conv(x)
    assert fast.shape == (3, 4, 3)
    torch.testing.assert_close(fast, ref)


def test_short_conv_uses_the_reference_when_the_kernel_cannot_run(fake_conv, monkeypatch):
    x = torch.randn(2, 7, 4)
    ShortConv(4, 5)(x)  # more taps than causal-conv1d supports
    ShortConv(4, 1)(x)
    ShortConv(4, 3)(x, torch.zeros(2, 4, 2))  # an incoming state
    off = ShortConv(4, 3)
    off.use_fast_path = False
    off(x)
    assert fake_conv.calls == 0
    ShortConv(4, 3)(x)
    assert fake_conv.calls == 1
    monkeypatch.setattr(kernels, "fast_path_ok", lambda tensor: False)  # "on the CPU"
    ShortConv(4, 3)(x)
    assert fake_conv.calls == 1


SHORT_CONV_MIXERS = [
    ("based", {}, "base_conv short conv"),  # layer 2 of the hybrid Based is a BaseConv
    ("deltanet", {}, "deltanet short convs"),
    ("deltanet", {"conv_bias": True, "d_conv": 2}, "deltanet short convs"),
    ("hyena", {}, "hyena short conv"),
    ("hyena", {"short_filter": 4, "bias": False}, "hyena short conv"),
    ("base_conv", {"kernel_size": 3}, "base_conv short conv"),
    ("base_conv", {"kernel_size": 4, "bias": False}, "base_conv short conv"),
]


@pytest.mark.parametrize("name, options, path", SHORT_CONV_MIXERS)
def test_mixer_short_conv_fast_branch_matches_the_reference(fake_conv, name, options, path):
    model = mixer(name, **options)
    x = torch.randn(2, 13, 32, dtype=torch.float64, requires_grad=True)
    assert_branches_agree(model, x)
    assert fake_conv.calls == (3 if name == "deltanet" else 1)


@pytest.mark.parametrize("name, calls", [("mamba", 1), ("mamba2", 1), ("mamba_conv1d", 0)])
def test_mamba_convs_take_the_fused_kernel_unless_the_ablation_forbids_it(fake_conv, name, calls):
    """Mamba's and Mamba-2's short convolutions are ``ShortConv``s; ``mamba_conv1d`` (the
    paper's plain-``nn.Conv1d`` ablation) never runs causal-conv1d."""
    model = mixer(name)
    x = torch.randn(2, 13, 32, dtype=torch.float64, requires_grad=True)
    assert_branches_agree(model, x)
    assert fake_conv.calls == calls


@pytest.mark.parametrize("name, options, path", SHORT_CONV_MIXERS[:3])
def test_stateful_forward_fast_branch_matches_the_reference(fake_conv, name, options, path):
    model = mixer(name, **options)
    x = torch.randn(2, 13, 32, dtype=torch.float64, requires_grad=True)

    def segments(x):  # the first segment may run fused, the second (with a state) may not
        y1, state = model.forward_with_state(x[:, :6])
        y2, state = model.forward_with_state(x[:, 6:], state)
        return torch.cat([y1, y2], 1) + sum(s.sum() for s in state)

    assert_branches_agree(model, x, segments)


@pytest.mark.parametrize("name, options, path", SHORT_CONV_MIXERS)
def test_mixer_logs_its_short_conv_path_once(fake_conv, caplog, name, options, path):
    model = mixer(name, **options)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="tinylang.kernels"):
        model(x)
        model(x)
        kernels.set_fast_path(model, False)
        model(x)
    assert caplog.text.count(f"{path} (layer 2): fused CUDA kernels") == 1
    assert caplog.text.count(f"{path} (layer 2): pure-PyTorch reference") == 1


def test_short_conv_mixers_log_the_reference_on_the_cpu(caplog):
    with caplog.at_level(logging.INFO, logger="tinylang.kernels"):
        for name, options, path in SHORT_CONV_MIXERS[::2]:
            before = caplog.text.count(f"{path} (layer 2): pure-PyTorch reference")  # based logs as base_conv
            model = mixer(name, **options)
            model(torch.randn(1, 4, 32, dtype=torch.float64))
            model(torch.randn(1, 4, 32, dtype=torch.float64))
            assert caplog.text.count(f"{path} (layer 2): pure-PyTorch reference") == before + 1
    assert "fused" not in caplog.text


def test_long_conv_base_conv_logs_nothing(fake_conv, caplog):
    with caplog.at_level(logging.INFO, logger="tinylang.kernels"):
        mixer("base_conv", kernel_size=-1)(torch.randn(1, 4, 32, dtype=torch.float64))
    assert caplog.text == "" and fake_conv.calls == 0


# -- DeltaNet's delta rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {}, {"use_short_conv": False}, {"n_heads": 4, "algorithm": "loop"}, {"n_heads": 2, "chunk_size": 4},
])
def test_deltanet_fast_branch_matches_the_reference(fake_delta_rule, options):
    model = mixer("deltanet", **options)
    x = torch.randn(2, 11, 32, dtype=torch.float64, requires_grad=True)
    assert_branches_agree(model, x)
    assert fake_delta_rule.calls == 1


def test_deltanet_fast_branch_with_state_matches_the_reference(fake_delta_rule, fake_conv):
    model = mixer("deltanet", n_heads=2)
    x = torch.randn(2, 11, 32, dtype=torch.float64, requires_grad=True)

    def segments(x):
        y1, state = model.forward_with_state(x[:, :4])
        y2, state = model.forward_with_state(x[:, 4:], state)
        return torch.cat([y1, y2], 1) + state[3].square().sum()  # the carried S, in our layout

    assert_branches_agree(model, x, segments)
    assert fake_delta_rule.calls == 2 and fake_conv.calls == 3  # convs fused in the first segment only
    with torch.no_grad():  # and the recurrence continues from the fused state
        kernels.set_fast_path(model, True)
        _, state = model.forward_with_state(x[:, :4])
        y_step, _ = model.step(x[:, 4], state)
        kernels.set_fast_path(model, False)
        y_ref, _ = model.forward_with_state(x[:, :5])
    torch.testing.assert_close(y_step, y_ref[:, 4])


def test_deltanet_keeps_float32_on_the_reference(fake_delta_rule, monkeypatch, caplog):
    monkeypatch.setattr(kernels, "DELTA_RULE_DTYPES", (torch.float16, torch.bfloat16))
    model = mixer("deltanet").float()
    with caplog.at_level(logging.INFO, logger="tinylang.kernels"):
        model(torch.randn(1, 5, 32))
        model(torch.randn(1, 5, 32))
    assert fake_delta_rule.calls == 0
    assert caplog.text.count("deltanet (layer 2): pure-PyTorch reference") == 1


def test_deltanet_logs_its_paths(fake_delta_rule, fake_conv, caplog):
    model = mixer("deltanet")
    x = torch.randn(1, 5, 32, dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="tinylang.kernels"):
        model(x)
        model(x)
        model.use_fast_path = False  # the delta rule only; the convolutions keep theirs
        model(x)
    assert caplog.text.count("deltanet (layer 2): fused CUDA kernels") == 1
    assert caplog.text.count("deltanet (layer 2): pure-PyTorch reference") == 1
    assert caplog.text.count("deltanet short convs (layer 2): fused CUDA kernels") == 1
    assert "short convs (layer 2): pure-PyTorch" not in caplog.text


def test_set_fast_path_reaches_every_flag():
    model = mixer("deltanet")
    kernels.set_fast_path(model, False)
    flags = [m.use_fast_path for m in model.modules() if hasattr(m, "use_fast_path")]
    assert len(flags) == 4 and not any(flags)
