"""Selective scans of the Mamba block, behind the :data:`SCANS` registry.

Every scan computes the same recurrence (Mamba-2's parameterisation: one scalar decay per head,
Dao & Gu, "Transformers are SSMs", 2024)::

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T      # h: (H, P, N) per sample
    y_t = h_t C_t

with shapes ``x (B, L, H, P)``, ``dt (B, L, H)`` (positive), ``A (H,)`` (negative), ``B_t, C_t (B, L, N)``,
``y (B, L, H, P)``, ``h_0 = 0``.

- ``reference``: the recurrence step by step (the inputs are ``unbind``-ed once: indexing ``x[:, t]``
  in a Python loop makes the backward pass quadratic in L). Memory O(L H P N).
- ``chunked``: Mamba-2's state-space-dual algorithm. Within chunks of length T, the output is a masked
  matrix product ``y = (C B^T * decay) (dt x)``; chunk-final states carry the recurrence between chunks
  (a short loop over L / T chunks). Memory O(L T H + (L / T) H P N).
- ``cuda``: ``mamba_ssm.selective_scan_fn`` (the fused Mamba kernel) when the optional package and a CUDA
  device are present; the scalar per-head decay is expanded to its (channels, N) form.
- ``auto``: ``cuda`` on CUDA tensors when available, else ``chunked``.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor

from exprflow.registry import Registry

SCANS: Registry = Registry("selective scan")


@SCANS.register("reference")
def reference_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int = 64) -> Tensor:
    """Sequential reference scan (see module docstring); ``chunk_size`` is ignored."""
    batch, _, H, P = x.shape
    decay = torch.exp(dt * A)  # (B, L, H)
    u = dt[..., None] * x  # (B, L, H, P)
    h = x.new_zeros(batch, H, P, B.shape[-1])
    ys = []
    for a_t, u_t, b_t, c_t in zip(decay.unbind(1), u.unbind(1), B.unbind(1), C.unbind(1)):
        h = a_t[:, :, None, None] * h + u_t[..., None] * b_t[:, None, None, :]
        ys.append(torch.einsum("bhpn,bn->bhp", h, c_t))
    return torch.stack(ys, dim=1)


def segment_sum(a: Tensor) -> Tensor:
    """``a (..., T)`` -> ``(..., T, T)`` with entry ``[t, s] = sum_{s < k <= t} a_k`` for ``s <= t``, else -inf.

    Summed from a masked copy (not as a difference of cumulative sums), so it stays exact when the
    cumulative sums are large.
    """
    T = a.shape[-1]
    rep = a[..., None, :].expand(*a.shape, T).transpose(-1, -2)  # [t, s] = a_t (then masked)
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)  # s < t
    rep = rep.masked_fill(~strict, 0.0)
    seg = torch.cumsum(rep, dim=-2)  # [t, s] = sum_{s < k <= t} a_k
    lower = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return seg.masked_fill(~lower, float("-inf"))


@SCANS.register("chunked")
def chunked_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int = 64) -> Tensor:
    """Chunked (Mamba-2 state-space-dual) scan; same result as :func:`reference_scan`."""
    batch, L, H, P = x.shape
    T = min(chunk_size, L)
    pad = (-L) % T
    if pad:  # dt = 0 on the padding: decay 1, no input, so states are untouched
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
    n_chunks = (L + pad) // T
    # (B, c, T, ...) chunked views; heads first where the decay matrices are built
    x = x.reshape(batch, n_chunks, T, H, P)
    a = (dt * A).reshape(batch, n_chunks, T, H).permute(0, 1, 3, 2)  # (B, c, H, T), <= 0
    u = (dt[..., None] * x.reshape(batch, -1, H, P)).reshape(batch, n_chunks, T, H, P)
    B = B.reshape(batch, n_chunks, T, -1)
    C = C.reshape(batch, n_chunks, T, -1)

    # 1. within chunks: y_diag[t] = sum_{s<=t} (C_t . B_s) exp(sum_{s<k<=t} a_k) u_s
    decay = torch.exp(segment_sum(a))  # (B, c, H, T, T)
    scores = torch.einsum("bctn,bcsn->bcts", C, B)[:, :, None] * decay  # (B, c, H, T, T)
    y = torch.einsum("bchts,bcshp->bcthp", scores, u)

    # 2. chunk-final states from each chunk's own inputs: sum_s exp(sum_{s<k<=T} a_k) u_s B_s^T
    cum = torch.cumsum(a, dim=-1)  # (B, c, H, T)
    to_end = torch.exp(cum[..., -1:] - cum)  # (B, c, H, T): a chunk's decay, exact enough within T
    states = torch.einsum("bcsn,bchs,bcshp->bchpn", B, to_end, u)

    # 3. between chunks: h_start[c] = exp(sum a over chunk c-1) h_start[c-1] + states[c-1]
    chunk_decay = torch.exp(cum[..., -1])  # (B, c, H)
    h = torch.zeros_like(states[:, 0])
    starts = []
    for s_c, d_c in zip(states.unbind(1), chunk_decay.unbind(1)):
        starts.append(h)
        h = d_c[:, :, None, None] * h + s_c
    h_start = torch.stack(starts, dim=1)  # (B, c, H, P, N)

    # 4. the carried-in state's contribution: y_off[t] = exp(sum_{k<=t} a_k) C_t h_start
    y = y + torch.einsum("bctn,bchpn,bcht->bcthp", C, h_start, torch.exp(cum))
    return y.reshape(batch, n_chunks * T, H, P)[:, :L]


def cuda_scan_available() -> bool:
    """Whether ``mamba_ssm`` is importable and a CUDA device is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


@SCANS.register("cuda")
def cuda_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int = 64) -> Tensor:
    """``mamba_ssm.selective_scan_fn`` on the expanded parameters (CUDA and the ``mamba`` extra only)."""
    if not (cuda_scan_available() and x.is_cuda):
        from exprflow.errors import ExprflowInputError

        raise ExprflowInputError(
            "scan='cuda' needs a CUDA device and the mamba-ssm package (pip install 'exprflow[mamba]'); "
            "use scan='chunked' (any device) instead."
        )
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    batch, L, H, P = x.shape
    N = B.shape[-1]
    u = x.reshape(batch, L, H * P).transpose(1, 2).contiguous()  # (B, E, L)
    delta = dt.repeat_interleave(P, dim=-1).transpose(1, 2).contiguous()  # (B, E, L)
    A_full = A.repeat_interleave(P)[:, None].expand(H * P, N).contiguous().float()  # (E, N)
    y = selective_scan_fn(u, delta, A_full, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous())
    return y.transpose(1, 2).reshape(batch, L, H, P)


@SCANS.register("auto")
def auto_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int = 64) -> Tensor:
    """``cuda`` where it can run, else ``chunked``."""
    scan = cuda_scan if (x.is_cuda and cuda_scan_available()) else chunked_scan
    return scan(x, dt, A, B, C, chunk_size)
