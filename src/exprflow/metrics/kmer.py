"""k-mer Markov baselines for nucleotide language models, in bits per nucleotide.

A **k-mer model** predicts a nucleotide from the ``k - 1`` nucleotides before it::

    P(x_i = b | x_{i-k+1} .. x_{i-1} = c) = (n(c, b) + 1) / (n(c) + 4)        (add-one / Laplace smoothing)

where ``n(c, b)`` counts the k-mer ``c b`` in the training region and ``n(c) = sum_b n(c, b)``. So
``k = 1`` is the unigram model (base composition), ``k = 2`` conditions on one previous nucleotide, and
``k = 8`` on seven (``4^7 = 16,384`` contexts, 65,536 counts). Bits per nucleotide on a sequence are
``-mean_i log2 P(x_i | context_i)``.

N (an unknown nucleotide) is never a prediction target and never a context: k-mers that contain an N
are not counted, and a position whose target is N, whose context holds an N, or whose context would
start before the sequence (no ``prefix`` given) is *skipped*; the result reports how many were scored
and skipped. Everything is vectorised with numpy (``np.bincount`` over context codes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exprflow.errors import ExprflowInputError
from exprflow.representations.dna import N_NUCLEOTIDES, N_TOKEN

MAX_K = 12  # 4^11 contexts x 4 counts = 16.8M float64 (134 MB): the largest table we allow


def _codes(x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """For every position ``i >= order`` of ``x``: the base-4 code of ``x[i-order:i]`` and whether the
    k-mer ``x[i-order:i+1]`` is free of N. Returns ``(codes, valid)``, both of length ``len(x) - order``."""
    x = np.asarray(x, dtype=np.int64)
    n = x.shape[0] - order
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    is_n = (x == N_TOKEN).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(is_n)])
    valid = (csum[order + 1:] - csum[:n]) == 0  # no N in x[i-order .. i]
    codes = np.zeros(n, dtype=np.int64)
    for j in range(1, order + 1):  # x[i-j] has weight 4^(j-1)
        codes += np.minimum(x[order - j:order - j + n], N_NUCLEOTIDES - 1) * (N_NUCLEOTIDES ** (j - 1))
    return codes, valid


@dataclass
class KmerModel:
    """Order ``k - 1`` Markov model with add-one smoothing (see the module docstring for ``k``)."""

    k: int

    def __post_init__(self) -> None:
        if not 1 <= int(self.k) <= MAX_K:
            raise ExprflowInputError(f"k must lie in 1..{MAX_K} (k = 1 is the unigram model), got {self.k}.")
        self.k = int(self.k)
        self.counts = np.zeros((N_NUCLEOTIDES ** (self.k - 1), N_NUCLEOTIDES), dtype=np.float64)

    @property
    def order(self) -> int:
        """Number of previous nucleotides the model conditions on (``k - 1``)."""
        return self.k - 1

    def fit(self, segments: list[np.ndarray]) -> "KmerModel":
        """Count the k-mers of each training segment (k-mers never span two segments)."""
        self.counts[:] = 0
        for seg in segments:
            codes, valid = _codes(seg, self.order)
            target = np.asarray(seg[self.order:], dtype=np.int64)[valid]
            flat = codes[valid] * N_NUCLEOTIDES + target
            self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        return self

    def probabilities(self) -> np.ndarray:
        """``(4^(k-1), 4)``: row ``c`` is ``P(. | context c)`` with add-one smoothing (rows sum to 1)."""
        return (self.counts + 1.0) / (self.counts.sum(axis=1, keepdims=True) + N_NUCLEOTIDES)

    def bits_per_nucleotide(self, tokens: np.ndarray, prefix: np.ndarray | None = None) -> dict:
        """Mean ``-log2 P`` over the positions of ``tokens``; ``prefix`` (the nucleotides before it)
        supplies the context of its first ``k - 1`` positions. Returns bits, scored and skipped counts."""
        tokens = np.asarray(tokens, dtype=np.int64)
        m = self.order
        head = np.asarray(prefix[len(prefix) - m:] if prefix is not None and m else [], dtype=np.int64)
        full = np.concatenate([head, tokens])
        codes, valid = _codes(full, m)
        offset = m - head.shape[0]  # positions of tokens without a full context (no prefix)
        target = full[m:]
        log_p = np.log2(self.probabilities())
        bits = -log_p[codes[valid], target[valid]]
        n_scored = int(valid.sum())
        if n_scored == 0:
            raise ExprflowInputError("no position could be scored: the sequence is shorter than k or all N.")
        return {"k": self.k, "bits_per_nt": float(bits.mean()), "n_scored": n_scored,
                "n_skipped": int(tokens.shape[0] - n_scored), "no_context_positions": int(offset)}


def kmer_table(train_segments: list[np.ndarray], held_out: np.ndarray, prefix: np.ndarray | None = None,
               ks=range(1, 9)) -> list[dict]:
    """Fit a :class:`KmerModel` for each ``k`` on the training segments and score ``held_out``."""
    return [KmerModel(k).fit(train_segments).bits_per_nucleotide(held_out, prefix=prefix) for k in ks]
