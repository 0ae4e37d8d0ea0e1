"""S4D, Hyena, Mamba and attention mixers: kernels against direct computation, causality, directions."""

from __future__ import annotations

import pytest
import torch

from exprflow.backbones.sequence import MIXERS, SequenceStack
from exprflow.backbones.ssm import S4D, Mamba, S4DKernel, fft_conv, two_sided_kernel

SMALL = {"s4d": {"state_dim": 8}, "hyena": {"filter_width": 8, "emb_dim": 5},
         "mamba": {"state_dim": 4, "head_dim": 8, "chunk_size": 4}, "attention": {"n_heads": 2}}


def _direct_conv(u, k_fwd, k_bwd=None):
    """y[i] = sum_{j<=i} k_fwd[i-j] u[j] (+ sum_{j>i} k_bwd[j-i] u[j])."""
    _, L, D = u.shape
    y = torch.zeros_like(u)
    for i in range(L):
        for j in range(L):
            if j <= i:
                y[:, i] += k_fwd[:, i - j] * u[:, j]
            elif k_bwd is not None:
                y[:, i] += k_bwd[:, j - i] * u[:, j]
    return y


def test_fft_conv_causal_and_two_sided_match_direct():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64)
    kf = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    kb = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(fft_conv(u, kf), _direct_conv(u, kf))
    torch.testing.assert_close(fft_conv(u, two_sided_kernel(kf, kb)), _direct_conv(u, kf, kb))


def test_s4d_kernel_is_the_discretised_recurrence():
    """K[l] = C dA^l dB summed over conjugate pairs: run the complex ZOH recurrence on an impulse."""
    torch.manual_seed(0)
    kernel = S4DKernel(channels=2, state_dim=6).double()
    L = 12
    K = kernel(L)
    dt = torch.exp(kernel.log_dt.double())[:, None]
    A = torch.complex(-torch.exp(kernel.log_A_real.double()), kernel.A_imag.double())
    dA, dB = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A
    C = torch.view_as_complex(kernel.C.double().contiguous())
    h = torch.zeros_like(dA)
    expected = []
    for step in range(L):
        h = dA * h + dB * (1.0 if step == 0 else 0.0)
        expected.append(2 * (C * h).sum(-1).real)
    torch.testing.assert_close(K, torch.stack(expected, dim=-1))


@pytest.mark.parametrize("name", ["s4d", "hyena", "mamba", "attention"])
def test_causal_mixer_ignores_the_future(name):
    torch.manual_seed(0)
    mixer = MIXERS.get(name)(8, causal=True, **SMALL[name]).double()
    u = torch.randn(2, 10, 8, dtype=torch.float64)
    changed = u.clone()
    changed[:, 6:] += torch.randn(2, 4, 8, dtype=torch.float64)
    y, y_changed = mixer(u), mixer(changed)
    torch.testing.assert_close(y[:, :6], y_changed[:, :6])
    assert not torch.allclose(y[:, 6:], y_changed[:, 6:])


@pytest.mark.parametrize("name", ["s4d", "hyena", "mamba", "attention"])
def test_bidirectional_mixer_sees_both_sides(name):
    torch.manual_seed(0)
    mixer = MIXERS.get(name)(8, causal=False, **SMALL[name]).double()
    u = torch.randn(1, 10, 8, dtype=torch.float64)
    y = mixer(u)
    for pos, region in [(2, slice(6, 10)), (8, slice(0, 4))]:  # future, then past
        changed = u.clone()
        changed[:, region] += 1.0
        assert not torch.allclose(mixer(changed)[:, pos], y[:, pos])


def test_mamba_block_output_does_not_depend_on_the_scan():
    torch.manual_seed(0)
    ref = Mamba(16, causal=False, scan="reference", state_dim=4, head_dim=8).double()
    fast = Mamba(16, causal=False, scan="chunked", chunk_size=3, state_dim=4, head_dim=8).double()
    fast.load_state_dict(ref.state_dict())
    u = torch.randn(2, 11, 16, dtype=torch.float64, requires_grad=True)
    y_ref, y_fast = ref(u), fast(u)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-10)
    g_ref = torch.autograd.grad(y_ref.square().sum(), [u, *ref.parameters()])
    g_fast = torch.autograd.grad(y_fast.square().sum(), [u, *fast.parameters()])
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_s4d_length_generalises_and_is_finite():
    mixer = S4D(4, state_dim=8)
    for L in (1, 7, 300):
        y = mixer(torch.randn(2, L, 4))
        assert y.shape == (2, L, 4) and torch.isfinite(y).all()


def test_hybrid_stack_mixes_names_per_block():
    stack = SequenceStack(8, 3, ["s4d", "attention", "mamba"], mixer_kwargs=SMALL)
    kinds = [type(b.mixer).__name__ for b in stack.blocks]
    assert kinds == ["S4D", "SelfAttention", "Mamba"]
    assert stack(torch.randn(2, 5, 8), torch.randn(2, 8)).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="depth"):
        SequenceStack(8, 2, ["s4d"])


def test_causal_depthwise_conv_matches_conv1d():
    from exprflow.backbones.ssm.mamba import causal_depthwise_conv

    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 9, 5, generator=gen, dtype=torch.float64)
    conv = torch.nn.Conv1d(5, 5, 4, groups=5).double()
    expected = conv(torch.nn.functional.pad(u.transpose(1, 2), (3, 0))).transpose(1, 2)
    torch.testing.assert_close(causal_depthwise_conv(u, conv.weight[:, 0, :], conv.bias), expected)
