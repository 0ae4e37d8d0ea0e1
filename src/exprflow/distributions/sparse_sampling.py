"""Exact NB / ZINB / Poisson count draws that pay for the non-zero entries only, written as CSR.

Most entries of a single-cell count matrix are zero, and the dense sampler still draws a Gamma and a
Poisson variate for each. Here every entry ``x`` is drawn by inversion from one uniform ``V``, as the
smallest ``k`` with ``P(x > k) <= V``, split into two stages::

    dense (torch, one pass):   x > 0  iff  V < P(x > 0) = 1 - exp(-h),   h = -log P(0)
                                   NB: h = theta log1p(mu / theta)      Poisson: h = mu
                               since P(x > 0) <= h <= mu, only entries with V < mu (the candidates,
                               a few per cent) need h; the others cost one uniform and one comparison
                               ZINB: a non-zero NB entry is then dropped with probability pi
    sparse (NumPy, per entry): x | x > 0, the zero-truncated distribution, drawn
        - by continuing the inversion from k = 1 with the same V where ``E[x | x > 0] <= 4`` (short
          walks), using P(k+1) / P(k) = (k + theta) / (k + 1) * mu / (mu + theta)  (Poisson: mu / (k + 1));
        - elsewhere by rejection: Gamma-Poisson draws until one is non-zero (1 / P(x > 0) tries on average).

Both stages are exact (given ``x > 0``, ``V`` is uniform on ``[0, P(x > 0))``, and the rejection
branch draws from the truncated law directly), up to the float32 resolution (2^-24) of the uniform;
the dense stage costs one uniform and one comparison per entry instead of a Gamma and a Poisson
variate, and the output is CSR from the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.distributions import Distribution

_EPS = 1e-8
_WALK_MEAN = 4.0  # entries with E[x | x > 0] up to this are drawn by inversion, the others by rejection
_MAX_WALK = 100_000  # inversion steps per draw (a bound; far tails end at _ROUND_OFF first)
_ROUND_OFF = 1e-15  # P(x > k) below this is float64 round-off: the walk stops there (an error of < 1e-15)


@dataclass
class NonzeroEntries:
    """Entries of one block of cells that are non-zero, with what the sparse stage needs (float64)."""

    rows: np.ndarray
    cols: np.ndarray
    mu: np.ndarray
    theta: np.ndarray | None  # None: Poisson
    v: np.ndarray  # the entry's uniform, V < P(x > 0)
    s0: np.ndarray  # P(x > 0) of the (non-inflated) NB / Poisson

    def shifted(self, row_offset: int) -> "NonzeroEntries":
        return NonzeroEntries(self.rows + row_offset, self.cols, self.mu, self.theta, self.v, self.s0)


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
    mu = mu if mu.dtype == torch.float32 else mu.float()  # means are >= 0 (decoders: softmax x library)
    v = torch.rand(mu.shape, generator=generator)
    flat = (v < mu).view(-1).nonzero().squeeze(1)  # candidates: P(x > 0) <= mu
    n_genes = mu.shape[1]
    rows, cols = flat // n_genes, flat % n_genes
    mu_c, v_c = mu[rows, cols].double(), v.view(-1)[flat].double()
    theta_c = None if theta is None else theta[rows, cols].double()
    s0 = -torch.expm1(-zero_hazard(mu_c, theta_c))
    keep = v_c < s0
    if zi_logits is not None:  # ZINB: the NB draw survives the zero-inflation with probability 1 - pi
        keep &= torch.rand(flat.shape[0], generator=generator) >= torch.sigmoid(zi_logits[rows, cols].float())
    return NonzeroEntries(rows=rows[keep].numpy(), cols=cols[keep].numpy().astype(np.int32), mu=mu_c[keep].numpy(),
                          theta=None if theta is None else theta_c[keep].numpy(), v=v_c[keep].numpy(),
                          s0=s0[keep].numpy())


def _full_draws(mu: np.ndarray, theta: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if theta is None:
        return rng.poisson(mu)
    theta = np.maximum(theta, _EPS)
    return rng.poisson(rng.gamma(theta, np.maximum(mu, _EPS) / theta))


def draw_truncated(entries: NonzeroEntries, rng: np.random.Generator) -> np.ndarray:
    """The sparse stage: a draw of ``x | x > 0`` for every entry (int64, all >= 1)."""
    mu, theta, s0 = entries.mu, entries.theta, entries.s0
    out = np.ones(len(mu), dtype=np.int64)
    short = mu <= _WALK_MEAN * s0  # E[x | x > 0] = mu / P(x > 0) small: inversion walks are short
    pending = np.flatnonzero(~short)  # rejection from the full distribution
    while pending.size:
        x = _full_draws(mu[pending], None if theta is None else theta[pending], rng)
        ok = x > 0
        out[pending[ok]] = x[ok]
        pending = pending[~ok]
    walk = np.flatnonzero(short)  # inversion from k = 1 with the same uniform V: smallest k, P(x > k) <= V
    m, v, s = mu[walk], entries.v[walk], s0[walk]
    th = None if theta is None else np.maximum(theta[walk], _EPS)
    step = m if th is None else m / (m + th)  # P(k + 1) / P(k) = step / (k + 1), times (k + theta) for NB
    pmf = (1 - s) * (step if th is None else th * step)  # P(x = 1)
    survival = s - pmf  # P(x > 1)
    active = np.flatnonzero(survival > v)
    idx, pmf, survival, v, step = walk[active], pmf[active], survival[active], v[active], step[active]
    th = None if th is None else th[active]
    k = 1  # every entry still walking stands at the same k
    while idx.size and k < _MAX_WALK:
        pmf *= step / (k + 1) if th is None else (k + th) / (k + 1) * step
        survival -= pmf
        k += 1
        going = (survival > v) & (survival > _ROUND_OFF)
        out[idx[~going]] = k
        if not going.all():
            idx, pmf, survival, v, step = idx[going], pmf[going], survival[going], v[going], step[going]
            th = None if th is None else th[going]
    out[idx] = k
    return out


def entries_to_csr(parts: list[NonzeroEntries], shape: tuple[int, int], rng: np.random.Generator,
                   dtype=np.int32) -> sp.csr_matrix:
    """Draw the non-zero values of row-ordered ``parts`` (rows already offset) and assemble one CSR matrix."""
    if parts:
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        entries = NonzeroEntries(cat("rows"), cat("cols"), cat("mu"),
                                 None if parts[0].theta is None else cat("theta"), cat("v"), cat("s0"))
    else:
        empty = np.zeros(0)
        entries = NonzeroEntries(np.zeros(0, np.int64), np.zeros(0, np.int32), empty, None, empty, empty)
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
