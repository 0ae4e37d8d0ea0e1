"""Every fast selective scan against the sequential reference: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exprflow.backbones.ssm import SCANS, chunked_scan, cuda_scan_available, reference_scan
from exprflow.backbones.ssm.scans import segment_sum
from exprflow.errors import ExprflowInputError


def _inputs(dtype, batch=2, L=37, H=3, P=4, N=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, H, P, generator=gen, dtype=dtype)
    dt = F.softplus(torch.randn(batch, L, H, generator=gen, dtype=dtype))
    A = -torch.exp(torch.randn(H, generator=gen, dtype=dtype))
    B = torch.randn(batch, L, N, generator=gen, dtype=dtype)
    C = torch.randn(batch, L, N, generator=gen, dtype=dtype)
    return [v.requires_grad_() for v in (x, dt, A, B, C)]


def _close(a, b, rtol, atol_scale):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol_scale * b.abs().max().item())


@pytest.mark.parametrize("chunk_size", [1, 8, 16, 37, 64])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_chunked_matches_reference(chunk_size, dtype, tol):
    inputs = _inputs(dtype)
    y_ref = reference_scan(*inputs)
    y = chunked_scan(*inputs, chunk_size=chunk_size)
    _close(y, y_ref, tol, tol)
    g = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, inputs, g)
    grads = torch.autograd.grad(y, inputs, g)
    for name, a, b in zip("x dt A B C".split(), grads, grads_ref):
        _close(a, b, tol, tol), name


def test_reference_is_the_recurrence():
    """A two-step sequence worked by hand: h1 = dt1 x1 B1, h2 = exp(dt2 A) h1 + dt2 x2 B2, y = h C."""
    x = torch.tensor([[[[1.0]], [[2.0]]]])  # (1, 2, 1, 1)
    dt = torch.tensor([[[0.5], [0.25]]])
    A = torch.tensor([-2.0])
    B = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    C = torch.tensor([[[1.0, 1.0], [2.0, 3.0]]])
    h1 = torch.tensor([0.5, 0.0])
    h2 = torch.exp(torch.tensor(-0.5)) * h1 + torch.tensor([0.0, 0.5])
    expected = torch.stack([h1 @ C[0, 0], h2 @ C[0, 1]])
    torch.testing.assert_close(reference_scan(x, dt, A, B, C).reshape(2), expected)
    torch.testing.assert_close(chunked_scan(x, dt, A, B, C, chunk_size=1).reshape(2), expected)


def test_segment_sum():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    seg = segment_sum(a)
    assert seg[2, 0] == 5.0 and seg[2, 1] == 3.0 and seg[1, 1] == 0.0 and seg[2, 2] == 0.0
    assert torch.isinf(seg[0, 1]) and seg[0, 1] < 0


def test_long_decay_stays_finite():
    """Strong decay over a long chunk underflows to zero, never to inf/NaN."""
    x, dt, A, B, C = (v.detach() for v in _inputs(torch.float32, L=256))
    y = chunked_scan(x, dt * 50, A * 10, B, C, chunk_size=128)
    assert torch.isfinite(y).all()
    _close(y, reference_scan(x, dt * 50, A * 10, B, C), 1e-5, 1e-5)


def test_registry_and_auto_on_cpu():
    assert {"reference", "chunked", "cuda", "auto"} <= set(SCANS.names())
    inputs = [v.detach() for v in _inputs(torch.float64, L=9)]
    torch.testing.assert_close(SCANS.get("auto")(*inputs), chunked_scan(*inputs))


@pytest.mark.skipif(cuda_scan_available(), reason="CUDA and mamba_ssm present")
def test_cuda_scan_refuses_clearly_without_cuda():
    with pytest.raises(ExprflowInputError, match="mamba-ssm"):
        SCANS.get("cuda")(*[v.detach() for v in _inputs(torch.float32, L=4)])


@pytest.mark.skipif(not cuda_scan_available(), reason="needs CUDA and mamba_ssm")
def test_cuda_scan_matches_reference():  # pragma: no cover - GPU machines only
    inputs = [v.detach().cuda() for v in _inputs(torch.float32)]
    _close(SCANS.get("cuda")(*inputs), reference_scan(*inputs), 1e-4, 1e-4)
