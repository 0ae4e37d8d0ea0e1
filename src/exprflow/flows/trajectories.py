"""Trajectories from snapshots: chain optimal-transport couplings of consecutive time points.

No cell is measured twice, so a trajectory ``[z(t_1), ..., z(t_n)]`` is inferred: couple the cells of
each pair of consecutive time points by optimal transport (squared Euclidean cost, in the latent
space) and chain the couplings (Schiebinger et al. 2019, Waddington-OT; Tong et al. 2020, TrajectoryNet)::

    P_k = argmin_{P in U(a_k, a_{k+1})} <P, C_k>,    C_k[i, j] = ||z_k,i - z_{k+1},j||^2
    i_1 ~ a_1,   i_{k+1} ~ P_k[i_k, :] / a_k[i_k]          (a Markov chain through the plans)

- ``"exact"``: one exact plan per pair (``ot.emd``; weights ``a_k`` uniform or lineage weights), then
  sequences are sampled through the plans. Cost ``O(n^3)`` per pair: small sets.
- ``"minibatch"``: per round, draw ``batch_size`` cells at each time point and solve the exact OT
  between consecutive minibatches (a permutation); the chained permutations give ``batch_size``
  sequences (minibatch OT, Fatras et al. 2020; the multi-marginal chaining of torchcfm's experiments).
- ``"auto"``: exact when every pair has at most ``exact_max`` cell pairs, minibatch otherwise.

Every sequence holds exactly one cell per time point. :func:`displacement_interpolation` is the
baseline for a held-out time point: McCann interpolation along the exact plan of its two neighbours.
"""

from __future__ import annotations

import logging

import numpy as np
import ot

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

CHAIN_METHODS = ("auto", "exact", "minibatch")
#: "auto" solves exactly when every consecutive pair has at most this many cell pairs (n_k * n_{k+1})
EXACT_MAX_PAIRS = 1_000_000


def _masses(n: int, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise ExprflowInputError(f"OT weights must be {n} non-negative numbers with a positive sum.")
    return w / w.sum()


def sq_euclidean(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Squared Euclidean cost matrix ``(n_a, n_b)`` in float64 (one GEMM, clipped at 0)."""
    a, b = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T), 0.0)


def ot_plan(za: np.ndarray, zb: np.ndarray, wa: np.ndarray | None = None, wb: np.ndarray | None = None,
            num_iter_max: int = 1_000_000) -> np.ndarray:
    """Exact OT plan ``(n_a, n_b)`` between point clouds (rows sum to ``wa``, columns to ``wb``, normalised)."""
    a, b = _masses(len(za), wa), _masses(len(zb), wb)
    return np.asarray(ot.emd(a, b, sq_euclidean(za, zb), numItermax=num_iter_max))


def _sample_rows(plan: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each ``i`` in ``rows``, a column ``j`` drawn with probability ``plan[i, j] / plan[i].sum()``."""
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), 4096):  # bounded (chunk x n_b) memory
        block = plan[rows[start:start + 4096]]
        cdf = np.cumsum(block, axis=1)
        u = rng.random(len(block)) * cdf[:, -1]
        out[start:start + 4096] = np.minimum((cdf < u[:, None]).sum(1), plan.shape[1] - 1)
    return out


def chain_exact(groups: list[np.ndarray], n_sequences: int, rng: np.random.Generator,
                weights: list[np.ndarray | None] | None = None) -> np.ndarray:
    """``(n_sequences, T)`` indices, column ``k`` into ``groups[k]``, sampled through exact OT plans."""
    weights = weights or [None] * len(groups)
    first = _masses(len(groups[0]), weights[0])
    idx = np.empty((n_sequences, len(groups)), dtype=np.int64)
    idx[:, 0] = rng.choice(len(groups[0]), size=n_sequences, p=first)
    for k in range(len(groups) - 1):
        plan = ot_plan(groups[k], groups[k + 1], weights[k], weights[k + 1])
        idx[:, k + 1] = _sample_rows(plan, idx[:, k], rng)
    return idx


def chain_minibatch(groups: list[np.ndarray], n_sequences: int, rng: np.random.Generator,
                    weights: list[np.ndarray | None] | None = None, batch_size: int = 256) -> np.ndarray:
    """``(n_sequences, T)`` indices from chained exact OT between minibatches of ``batch_size`` cells."""
    weights = weights or [None] * len(groups)
    probs = [_masses(len(g), w) for g, w in zip(groups, weights)]
    rounds = []
    for _ in range(-(-n_sequences // batch_size)):
        picks = [rng.choice(len(g), size=batch_size, p=p) for g, p in zip(groups, probs)]
        seq = np.empty((batch_size, len(groups)), dtype=np.int64)
        seq[:, 0] = picks[0]
        order = np.arange(batch_size)  # row r of the chain sits at position order[r] of the current batch
        for k in range(len(groups) - 1):
            plan = ot_plan(groups[k][picks[k]], groups[k + 1][picks[k + 1]])
            partner = plan.argmax(axis=1)  # uniform equal-size batches: a permutation
            order = partner[order]
            seq[:, k + 1] = picks[k + 1][order]
        rounds.append(seq)
    return np.concatenate(rounds)[:n_sequences]


def chain_sequences(groups: list[np.ndarray], n_sequences: int, *, method: str = "auto", seed: int = 0,
                    weights: list[np.ndarray | None] | None = None, batch_size: int = 256,
                    exact_max: int = EXACT_MAX_PAIRS) -> np.ndarray:
    """Chain OT couplings of consecutive point clouds ``groups[k] (n_k, d)`` into sequences.

    Returns ``(n_sequences, len(groups))`` int64 indices; column ``k`` indexes ``groups[k]``. See the
    module docstring for the methods.
    """
    if method not in CHAIN_METHODS:
        raise ExprflowInputError(f"OT chaining method must be one of {CHAIN_METHODS}, got {method!r}.")
    if len(groups) < 2:
        raise ExprflowInputError("OT chaining needs at least two time points.")
    empty = [k for k, g in enumerate(groups) if len(g) == 0]
    if empty:
        raise ExprflowInputError(f"time point(s) {empty} hold no cells; every time point needs cells.")
    rng = np.random.default_rng(seed)
    if method == "auto":
        largest = max(len(a) * len(b) for a, b in zip(groups[:-1], groups[1:]))
        method = "exact" if largest <= exact_max else "minibatch"
    logger.info("chaining %d time points into %d sequences (%s OT)", len(groups), n_sequences, method)
    if method == "exact":
        return chain_exact(groups, n_sequences, rng, weights)
    return chain_minibatch(groups, n_sequences, rng, weights, batch_size)


def displacement_interpolation(za: np.ndarray, zb: np.ndarray, s: float, n: int, *, seed: int = 0,
                               wa: np.ndarray | None = None, wb: np.ndarray | None = None) -> np.ndarray:
    """``n`` points of McCann's interpolation at fraction ``s``: ``(1 - s) za[i] + s zb[j]``, ``(i, j) ~ P``.

    ``P`` is the exact OT plan between ``za`` and ``zb``; ``s = (t - t_a) / (t_b - t_a)``.
    """
    if not 0.0 <= s <= 1.0:
        raise ExprflowInputError(f"interpolation fraction must lie in [0, 1], got {s}.")
    plan = ot_plan(za, zb, wa, wb)
    rng = np.random.default_rng(seed)
    flat = plan.ravel() / plan.sum()
    pick = rng.choice(flat.size, size=n, p=flat)
    i, j = np.divmod(pick, plan.shape[1])
    return (1.0 - s) * np.asarray(za)[i] + s * np.asarray(zb)[j]
