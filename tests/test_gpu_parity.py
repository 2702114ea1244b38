"""Fused CUDA kernels against the pure-PyTorch reference (needs a GPU and `tinylang[cuda]`)."""

from __future__ import annotations

import pytest
import torch

from tinylang.models import MIXERS, kernels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(kernels.selective_scan_fn() is None, reason="needs mamba-ssm (pip install tinylang[cuda])"),
]

# float32 on the GPU: the fused scan accumulates in a different order than the reference.
ATOL, RTOL = 1e-4, 1e-3


@pytest.mark.parametrize("name", ["mamba", "mamba_without_conv", "mamba_conv1d"])
def test_fused_mamba_matches_the_reference_forward_and_backward(name):
    torch.manual_seed(0)
    cls = MIXERS.get(name)
    mixer = cls(64, cls.Options(), layer_idx=0).cuda()
    x = torch.randn(4, 37, 64, device="cuda", requires_grad=True)

    def run(fast: bool):
        mixer.use_fast_path = fast
        mixer.zero_grad()
        x.grad = None
        y = mixer(x)
        y.square().mean().backward()
        return y.detach(), x.grad.detach(), {n: p.grad.detach().clone() for n, p in mixer.named_parameters()}

    y_fast, gx_fast, g_fast = run(True)
    y_ref, gx_ref, g_ref = run(False)
    torch.testing.assert_close(y_fast, y_ref, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(gx_fast, gx_ref, atol=ATOL, rtol=RTOL)
    for param in g_ref:
        torch.testing.assert_close(g_fast[param], g_ref[param], atol=ATOL, rtol=RTOL, msg=param)
