"""Gene tokenizers of the foundation-model baselines (Geneformer rank-value tokens, scGPT value bins).

Geneformer (Theodoris et al., 2023), rank-value encoding::

    normalised = counts / library * 10,000               # per cell
    score_g = normalised_g / median_g                    # median_g: median of the gene's NONZERO normalised
                                                         # values over the TRAIN cells only
    tokens = detected genes sorted by score (descending), truncated to the first 2,048

scGPT (Cui et al., 2024), value binning: per cell, the nonzero values are cut at their own quantiles
``linspace(0, 1, n_bins - 1)`` and digitised, so bin 0 means "not detected" and bins
``1 .. n_bins - 1`` are the cell's quantile bins (``n_bins = 51`` in the paper).

NumPy functions work on count matrices (reference implementations, used for statistics); the torch
functions (:func:`rank_order`, :func:`value_bins_torch`) are what the backbones run on log1p values.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

GENEFORMER_MAX_TOKENS = 2048
SCGPT_N_BINS = 51
TARGET_SUM = 1e4


def normalise_total(counts: np.ndarray | sp.spmatrix, target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """Counts scaled so every cell sums to ``target_sum`` (CSR, float64; empty cells stay zero)."""
    X = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    library = np.asarray(X.sum(axis=1)).ravel()
    factor = np.divide(target_sum, library, out=np.zeros_like(library), where=library > 0)
    X.data *= np.repeat(factor, np.diff(X.indptr))
    X.eliminate_zeros()
    return X


def nonzero_medians(train_counts: np.ndarray | sp.spmatrix, target_sum: float = TARGET_SUM) -> np.ndarray:
    """Per-gene median of the nonzero normalised values of the TRAIN cells (Geneformer's gene scale).

    Pass only training cells: the medians are part of the model and must not see test cells. Genes
    never detected in training get median 1 (their score is then the normalised value itself).
    """
    X = normalise_total(train_counts, target_sum).tocsc()
    medians = np.ones(X.shape[1], dtype=np.float64)
    for g in range(X.shape[1]):
        col = X.data[X.indptr[g] : X.indptr[g + 1]]
        if col.size:
            medians[g] = np.median(col)
    return medians


def rank_value_tokens(
    counts: np.ndarray | sp.spmatrix,
    medians: np.ndarray,
    max_tokens: int = GENEFORMER_MAX_TOKENS,
    target_sum: float = TARGET_SUM,
) -> tuple[np.ndarray, np.ndarray]:
    """Geneformer rank-value tokens of each cell.

    Returns ``(tokens, lengths)``: ``tokens (n_cells, L)`` int64 gene indices in rank order (highest
    ``normalised / median`` first, ties by gene index), padded with ``-1``; ``L = min(max_tokens,
    most detected genes in a cell)``; ``lengths (n_cells,)`` the number of tokens of each cell.
    """
    X = normalise_total(counts, target_sum)
    medians = np.asarray(medians, dtype=np.float64)
    rows = []
    for i in range(X.shape[0]):
        idx = X.indices[X.indptr[i] : X.indptr[i + 1]]
        score = X.data[X.indptr[i] : X.indptr[i + 1]] / medians[idx]
        order = np.lexsort((idx, -score))  # primary key: score descending; ties: gene index
        rows.append(idx[order][:max_tokens])
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    tokens = np.full((X.shape[0], int(lengths.max(initial=0))), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    return tokens, lengths


def value_bins(values: np.ndarray | sp.spmatrix, n_bins: int = SCGPT_N_BINS) -> np.ndarray:
    """scGPT value bins of each cell (row): 0 where the value is 0, else ``1 .. n_bins - 1``.

    The edges are the cell's own quantiles of its nonzero values at ``linspace(0, 1, n_bins - 1)``;
    a value gets the number of edges ``<=`` it (``np.digitize``), so each cell's largest value is in
    bin ``n_bins - 1``. Works on counts or on log1p values alike (binning is rank-based per cell).
    """
    dense = values.toarray() if sp.issparse(values) else np.asarray(values, dtype=np.float64)
    bins = np.zeros(dense.shape, dtype=np.int64)
    q = np.linspace(0.0, 1.0, n_bins - 1)
    for i, row in enumerate(dense):
        nz = row > 0
        if nz.any():
            edges = np.quantile(row[nz], q)
            bins[i, nz] = np.digitize(row[nz], edges)
    return bins


# ---------------------------------------------------------------------------------- torch versions
def rank_order(score: Tensor, detected: Tensor, max_tokens: int = GENEFORMER_MAX_TOKENS) -> tuple[Tensor, Tensor]:
    """Rank-value token order of a batch: ``score (B, G)``, ``detected (B, G)`` bool.

    Returns ``(order (B, L), mask (B, L))``: gene indices by descending score among detected genes
    (ties by gene index; stable sort, so each row depends only on itself), ``L = min(max_tokens, most
    detected genes of a cell in the batch)`` (padding beyond the longest cell would only be masked);
    ``mask`` marks real tokens. A cell with no detected gene keeps its first token, so attention over
    it is defined.
    """
    n_detected = detected.sum(dim=1)  # (B,)
    n_keep = max(1, min(max_tokens, score.shape[1], int(n_detected.max())))
    masked = torch.where(detected, score, torch.full_like(score, -torch.inf))
    order = torch.sort(masked, dim=1, descending=True, stable=True).indices[:, :n_keep]  # (B, L)
    n_tokens = n_detected.clamp(1, n_keep)  # (B,)
    mask = torch.arange(n_keep, device=score.device)[None, :] < n_tokens[:, None]
    return order, mask


def value_bins_torch(values: Tensor, n_bins: int = SCGPT_N_BINS) -> Tensor:
    """:func:`value_bins` for a ``(B, G)`` tensor (values ``<= 0`` count as not detected) -> long bins."""
    detected = values > 0
    nan = torch.full_like(values, torch.nan)
    q = torch.linspace(0.0, 1.0, n_bins - 1, device=values.device, dtype=values.dtype)
    edges = torch.nanquantile(torch.where(detected, values, nan), q, dim=1).T.contiguous()  # (B, n_bins - 1)
    edges = torch.nan_to_num(edges, nan=torch.inf)  # cells with nothing detected: every bin is 0 below
    bins = torch.searchsorted(edges, values.contiguous(), right=True)  # number of edges <= value
    return torch.where(detected, bins, torch.zeros_like(bins))
