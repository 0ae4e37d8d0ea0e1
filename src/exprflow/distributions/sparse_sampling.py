"""Exact NB / ZINB / Poisson count draws that pay for the non-zero entries only, written as CSR.

Most entries of a single-cell count matrix are zero, and the dense sampler still draws a Gamma and a
Poisson variate for each. Here every entry ``x`` is drawn by inversion of its CDF ``F`` from one
uniform ``U = exp(-E)``, ``E ~ Exp(1)``, split into two stages::

    dense (torch, one pass):   x > 0  iff  U > P(0)  iff  E < h,   h = -log P(0)
                                   NB: h = theta log1p(mu / theta)      Poisson: h = mu
                               ZINB: a non-zero NB entry is then dropped with probability pi
    sparse (NumPy, per entry): x | x > 0, the zero-truncated distribution, drawn
        - by continuing the inversion from k = 1 with the same U where ``E[x | x > 0] <= 4`` (short
          walks), using P(k+1) / P(k) = (k + theta) / (k + 1) * mu / (mu + theta)  (Poisson: mu / (k + 1));
        - elsewhere by rejection: Gamma-Poisson draws until one is non-zero (1 / P(x > 0) tries on average).

Both stages are exact (given ``x > 0``, ``U`` is uniform on ``(P(0), 1]``, and the rejection branch
draws from the truncated law directly); the dense stage costs one exponential and one comparison per
entry instead of a Gamma and a Poisson variate, and the output is CSR from the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.distributions import Distribution

_EPS = 1e-8
_WALK_MEAN = 4.0  # entries with E[x | x > 0] up to this are drawn by inversion, the others by rejection
_MAX_WALK = 100_000  # inversion steps per draw (reached only at float64 round-off in the far tail)


@dataclass
class NonzeroEntries:
    """Entries of one block of cells that are non-zero, with what the sparse stage needs (float64)."""

    rows: np.ndarray
    cols: np.ndarray
    mu: np.ndarray
    theta: np.ndarray | None  # None: Poisson
    e: np.ndarray  # the entry's Exp(1) variate, E < h

    def shifted(self, row_offset: int) -> "NonzeroEntries":
        return NonzeroEntries(self.rows + row_offset, self.cols, self.mu, self.theta, self.e)


def _params(px: Distribution) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(mu, theta, zi_logits)`` of an exprflow count distribution (NB, ZINB or Poisson)."""
    return px.mu, getattr(px, "theta", None), getattr(px, "zi_logits", None)


def zero_hazard(mu, theta=None):
    """``-log P(x = 0)`` of NB(mu, theta) (Poisson when ``theta`` is None), for torch or NumPy arrays."""
    if theta is None:
        return mu
    if isinstance(theta, torch.Tensor):
        theta = theta.clamp_min(_EPS)
        return theta * torch.log1p(mu / theta)
    theta = np.maximum(theta, _EPS)
    return theta * np.log1p(mu / theta)


@torch.no_grad()
def select_nonzero(px: Distribution, generator: torch.Generator | None = None) -> NonzeroEntries:
    """The dense stage on a ``(cells, genes)`` distribution: which entries are non-zero (see module docstring)."""
    mu, theta, zi_logits = _params(px)
    mu = mu.float().clamp_min(0.0)
    h = zero_hazard(mu, None if theta is None else theta.float())
    e = torch.empty_like(mu).exponential_(generator=generator)
    flat = (e < h).view(-1).nonzero().squeeze(1)
    n_genes = mu.shape[1]
    rows, cols = flat // n_genes, flat % n_genes
    if zi_logits is not None:  # ZINB: the NB draw survives the zero-inflation with probability 1 - pi
        keep = torch.rand(flat.shape[0], generator=generator) >= torch.sigmoid(zi_logits[rows, cols].float())
        flat, rows, cols = flat[keep], rows[keep], cols[keep]
    as64 = lambda t: t.double().numpy()  # noqa: E731
    return NonzeroEntries(
        rows=rows.numpy().astype(np.int64), cols=cols.numpy().astype(np.int32), mu=as64(mu.view(-1)[flat]),
        theta=None if theta is None else as64(theta[rows, cols]), e=as64(e.view(-1)[flat]),
    )


def _full_draws(mu: np.ndarray, theta: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if theta is None:
        return rng.poisson(mu)
    theta = np.maximum(theta, _EPS)
    return rng.poisson(rng.gamma(theta, np.maximum(mu, _EPS) / theta))


def draw_truncated(entries: NonzeroEntries, rng: np.random.Generator) -> np.ndarray:
    """The sparse stage: a draw of ``x | x > 0`` for every entry (int64, all >= 1)."""
    mu, theta, e = entries.mu, entries.theta, entries.e
    h = zero_hazard(mu, theta)
    out = np.ones(len(mu), dtype=np.int64)
    short = mu <= _WALK_MEAN * -np.expm1(-h)  # E[x | x > 0] = mu / P(x > 0) small: inversion walks are short
    pending = np.flatnonzero(~short)  # rejection from the full distribution
    while pending.size:
        x = _full_draws(mu[pending], None if theta is None else theta[pending], rng)
        ok = x > 0
        out[pending[ok]] = x[ok]
        pending = pending[~ok]
    walk = np.flatnonzero(short)  # inversion from k = 1 with the same uniform
    if walk.size:
        m, v = mu[walk], -np.expm1(-e[walk])  # v = 1 - U, uniform on [0, P(x > 0))
        if theta is None:
            ratio_base, th = m, None
        else:
            th = np.maximum(theta[walk], _EPS)
            ratio_base = m / (m + th)
        p0 = np.exp(-h[walk])
        pmf = p0 * (m if th is None else th * ratio_base)  # P(x = 1)
        survival = -np.expm1(-h[walk]) - pmf  # P(x > 1)
        k = np.ones(walk.size, dtype=np.int64)
        active = np.flatnonzero(survival > v)
        for _ in range(_MAX_WALK):
            if not active.size:
                break
            ka = k[active]
            if th is None:
                pmf[active] *= ratio_base[active] / (ka + 1)
            else:
                pmf[active] *= (ka + th[active]) / (ka + 1) * ratio_base[active]
            k[active] = ka + 1
            survival[active] -= pmf[active]
            active = active[survival[active] > v[active]]
        out[walk] = k
    return out


def entries_to_csr(parts: list[NonzeroEntries], shape: tuple[int, int], rng: np.random.Generator,
                   dtype=np.int32) -> sp.csr_matrix:
    """Draw the non-zero values of row-ordered ``parts`` (rows already offset) and assemble one CSR matrix."""
    if parts:
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        entries = NonzeroEntries(cat("rows"), cat("cols"), cat("mu"),
                                 None if parts[0].theta is None else cat("theta"), cat("e"))
    else:
        entries = NonzeroEntries(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), None, np.zeros(0))
    values = draw_truncated(entries, rng).astype(dtype)
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(entries.rows, minlength=shape[0]), out=indptr[1:])
    return sp.csr_matrix((values, entries.cols, indptr), shape=shape)


def sample_csr(px: Distribution, seed: int = 0, dtype=np.int32) -> sp.csr_matrix:
    """One exact draw of a ``(cells, genes)`` NB / ZINB / Poisson distribution as a CSR matrix.

    Same distribution as ``px.sample()`` (a different random stream); see the module docstring.
    """
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    return entries_to_csr([select_nonzero(px, generator)], tuple(px.mu.shape), rng, dtype=dtype)
