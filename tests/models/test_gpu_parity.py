"""Fused CUDA kernels against the pure-PyTorch reference (needs a GPU and `tinylang[cuda]`).

Each test skips on its own missing kernel: mamba-ssm (Mamba), causal-conv1d (``ShortConv`` and
the mixers built on it) or flash-linear-attention (DeltaNet's delta rule).
"""

from __future__ import annotations

import pytest
import torch

from tinylang.models import MIXERS, kernels
from tinylang.models.mixers._shortconv import ShortConv

pytestmark = pytest.mark.gpu


def needs(kernel, package: str) -> pytest.MarkDecorator:
    """Skip without CUDA, or without ``package``'s kernel (looked up only when there is CUDA)."""
    if not torch.cuda.is_available():
        return pytest.mark.skipif(True, reason="needs CUDA")
    return pytest.mark.skipif(kernel() is None, reason=f"needs {package} (pip install tinylang[cuda])")


needs_mamba_ssm = needs(kernels.selective_scan_fn, "mamba-ssm")
needs_causal_conv1d = needs(kernels.causal_conv1d_fn, "causal-conv1d")
needs_fla = needs(kernels.chunk_delta_rule, "flash-linear-attention")

# float32 on the GPU: the fused kernels accumulate in a different order than the reference.
ATOL, RTOL = 1e-4, 1e-3


def run(module, x, fast: bool, forward=None):
    """Output, input gradient and parameter gradients of ``module`` with its fused kernels on or off,
    plus which paths the module logged (``name -> fused``)."""
    kernels.set_fast_path(module, fast)
    module.zero_grad()
    x.grad = None
    y = (forward or module)(x)
    y.float().square().mean().backward()
    grads = {n: p.grad.detach().float().clone() for n, p in module.named_parameters() if p.grad is not None}
    paths = {}  # logged by the module or its parts (Based's BaseConv)
    for part in module.modules():
        paths.update(part.__dict__.get("_paths_logged", {}))
    return y.detach().float(), x.grad.detach().float(), grads, paths


def assert_same(fast, ref, atol=ATOL, rtol=RTOL):
    (y_fast, gx_fast, g_fast, _), (y_ref, gx_ref, g_ref, _) = fast, ref
    torch.testing.assert_close(y_fast, y_ref, atol=atol, rtol=rtol)
    torch.testing.assert_close(gx_fast, gx_ref, atol=atol, rtol=rtol)
    assert g_fast.keys() == g_ref.keys()
    for param in g_ref:
        torch.testing.assert_close(g_fast[param], g_ref[param], atol=atol, rtol=rtol, msg=param)


@needs_mamba_ssm
@pytest.mark.parametrize("name", ["mamba", "mamba_without_conv", "mamba_conv1d"])
def test_fused_mamba_matches_the_reference_forward_and_backward(name):
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    mixer = cls(64, cls.Options(), layer_idx=0).cuda()
    x = torch.randn(4, 37, 64, device="cuda", requires_grad=True)
    assert_same(run(mixer, x, True), run(mixer, x, False))


@needs_causal_conv1d
@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("activation, bias", [(False, True), (True, False), (True, True)])
def test_fused_short_conv_matches_the_reference(kernel_size, activation, bias):
    torch.manual_seed(0)
    conv = ShortConv(48, kernel_size, bias=bias, activation=activation).cuda()
    x = torch.randn(3, 37, 48, device="cuda", requires_grad=True)

    def forward(x):
        y, state = conv(x)
        torch.testing.assert_close(state, x.detach().transpose(1, 2)[..., x.shape[1] - kernel_size + 1:])
        return y

    assert conv.fused_kernel(x) is not None
    assert_same(run(conv, x, True, forward), run(conv, x, False, forward))


@needs_causal_conv1d
@pytest.mark.parametrize("name, options, path", [
    ("based", {}, "base_conv short conv"),  # layer 0 of the hybrid Based is a BaseConv
    ("deltanet", {}, "deltanet short convs"),  # float32: the delta rule itself stays the reference
    ("deltanet", {"conv_bias": True, "d_conv": 3}, "deltanet short convs"),
    ("hyena", {}, "hyena short conv"),
    ("base_conv", {"kernel_size": 3}, "base_conv short conv"),
    ("base_conv", {"kernel_size": 4}, "base_conv short conv"),
], ids=["based", "deltanet", "deltanet_bias_k3", "hyena", "base_conv", "base_conv_k4"])
def test_mixers_with_a_fused_short_conv_match_the_reference(name, options, path):
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    mixer = cls(64, cls.Options(**options), layer_idx=0).cuda()
    x = torch.randn(4, 37, 64, device="cuda", requires_grad=True)
    fast, ref = run(mixer, x, True), run(mixer, x, False)
    assert fast[3][path] is True and ref[3][path] is False
    assert_same(fast, ref)


def assert_relative(actual, expected, tol, what=""):
    """``|actual - expected| / |expected| <= tol`` in the Frobenius norm (bfloat16 is too coarse for
    an elementwise tolerance on small entries)."""
    err = ((actual.float() - expected.float()).norm() / expected.float().norm().clamp_min(1e-12)).item()
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"


# fla's chunk_delta_rule refuses float32, so it runs in bfloat16 (under autocast, the module's
# parameters float32) and is compared with the float32 reference: bfloat16 keeps 8 bits of
# mantissa (relative rounding 4e-3 a step), so the outputs, gradients and states must agree to
# 5e-2 in relative Frobenius norm.
BF16_TOL = 5e-2


@needs_fla
@pytest.mark.parametrize("options", [{}, {"use_short_conv": False}, {"n_heads": 2, "conv_bias": True}])
def test_fused_deltanet_matches_the_reference(options):
    torch.manual_seed(0)
    cls = MIXERS.get("deltanet")
    mixer = cls(128, cls.Options(**options), layer_idx=0).cuda()
    x = torch.randn(4, 100, 128, device="cuda", requires_grad=True)

    def forward_bf16(x):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return mixer(x)

    fast = run(mixer, x, True, forward_bf16)
    ref = run(mixer, x, False)
    assert fast[3]["deltanet"] is True and ref[3]["deltanet"] is False
    assert_relative(fast[0], ref[0], BF16_TOL, "output")
    assert_relative(fast[1], ref[1], BF16_TOL, "input gradient")
    for param in ref[2]:
        assert_relative(fast[2][param], ref[2][param], BF16_TOL, param)

    # Carried state: two segments through forward_with_state, the fla state transposed back.
    kernels.set_fast_path(mixer, True)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        y1, state = mixer.forward_with_state(x[:, :60])
        y2, state = mixer.forward_with_state(x[:, 60:], state)
    kernels.set_fast_path(mixer, False)
    with torch.no_grad():
        r1, ref_state = mixer.forward_with_state(x[:, :60])
        r2, ref_state = mixer.forward_with_state(x[:, 60:], ref_state)
    assert_relative(torch.cat([y1, y2], 1), torch.cat([r1, r2], 1), BF16_TOL, "segmented output")
    assert_relative(state[3], ref_state[3], BF16_TOL, "delta-rule state")
