"""The reference space of the evaluation protocol (docs/evaluation.md, "Reference space").

Counts are normalised per cell to 10,000 total and ``log1p``-transformed (non-count data: ``log1p``
only), then projected on 30 principal components fitted, centered, on the real TRAIN cells only. Real
test cells and generated cells go through exactly the same normalisation and projection.

Sparse matrices stay sparse through the normalisation (``log1p(0) = 0``) and are projected as
``x @ W.T - mean @ W.T``, so a large sparse matrix is never densified whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

TARGET_SUM = 1e4
N_COMPONENTS = 30


def row_chunks(n_rows: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` row ranges of at most ``chunk_size`` rows covering ``range(n_rows)``."""
    for start in range(0, n_rows, chunk_size):
        yield start, min(start + chunk_size, n_rows)


def normalise_rows(x, *, counts: bool = True, target_sum: float = TARGET_SUM):
    """Normalise a block of cells (rows) in float64; the input is never modified.

    ``counts=True``: scale each cell to ``target_sum`` total, then ``log1p``; cells with zero total
    stay zero. ``counts=False``: ``log1p`` only. Returns CSR for sparse input, ``ndarray`` otherwise.
    """
    if sp.issparse(x):
        out = sp.csr_matrix(x, dtype=np.float64, copy=True)
        if counts:
            lib = np.asarray(out.sum(axis=1)).ravel()
            scale = np.divide(target_sum, lib, out=np.zeros_like(lib), where=lib > 0)
            out.data *= np.repeat(scale, np.diff(out.indptr))
        np.log1p(out.data, out=out.data)
        return out
    out = np.array(x, dtype=np.float64)  # always a copy
    if counts:
        lib = out.sum(axis=1)
        scale = np.divide(target_sum, lib, out=np.zeros_like(lib), where=lib > 0)
        out *= scale[:, None]
    np.log1p(out, out=out)
    return out


class ReferenceSpace:
    """Normalisation + PCA fitted on real train cells; the space every distance metric lives in.

    Example::

        space = ReferenceSpace(n_components=30, counts=True).fit(train_counts)
        z_test = space.transform(test_counts)      # (n_cells, 30) float64
        z_gen = space.transform(generated_counts)  # same normalisation, same mean and components

    ``n_components`` is lowered (with a warning) when the train matrix has too few cells or genes.
    """

    def __init__(
        self,
        n_components: int = N_COMPONENTS,
        counts: bool = True,
        *,
        target_sum: float = TARGET_SUM,
        chunk_size: int = 1024,
    ) -> None:
        if n_components < 1:
            raise ExprflowInputError(f"n_components must be >= 1, got {n_components}.")
        self.n_components = n_components
        self.counts = counts
        self.target_sum = target_sum
        self.chunk_size = chunk_size
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.explained_variance_ratio_: np.ndarray | None = None

    def fit(self, x) -> ReferenceSpace:
        """Fit the centered PCA on the normalised train matrix ``x`` (cells x genes, counts)."""
        n_cells, n_genes = x.shape
        k = min(self.n_components, n_cells - 1, n_genes - 1)
        if k < 1:
            raise ExprflowInputError(
                f"Cannot fit a PCA on a {n_cells} x {n_genes} train matrix; pass at least 2 cells and 2 genes."
            )
        if k < self.n_components:
            logger.warning("PCA: %d components requested, %d possible for a %d x %d matrix; using %d.",
                           self.n_components, k, n_cells, n_genes, k)
        # ARPACK works on sparse input with implicit centering; fixed start vector for reproducibility.
        pca = PCA(n_components=k, svd_solver="arpack", random_state=0)
        pca.fit(normalise_rows(x, counts=self.counts, target_sum=self.target_sum))
        self.mean_ = pca.mean_.astype(np.float64)
        self.components_ = pca.components_.astype(np.float64)  # (k, n_genes)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_.astype(np.float64)
        self._mean_projected = self.mean_ @ self.components_.T  # (k,)
        logger.info("Reference PCA: %d components explain %.1f %% of the train variance.",
                    k, 100 * self.explained_variance_ratio_.sum())
        return self

    @property
    def n_components_(self) -> int:
        """Number of components actually fitted."""
        self._check_fitted()
        return self.components_.shape[0]

    def iter_normalised(self, x) -> Iterator[tuple[int, int, np.ndarray | sp.csr_matrix]]:
        """Yield ``(start, stop, block)`` with the normalised rows ``start:stop`` (sparse stays sparse)."""
        for start, stop in row_chunks(x.shape[0], self.chunk_size):
            yield start, stop, normalise_rows(x[start:stop], counts=self.counts, target_sum=self.target_sum)

    def normalise(self, x) -> np.ndarray:
        """Normalised values as a dense float64 array, built chunk by chunk (needs no fit)."""
        out = np.empty(x.shape, dtype=np.float64)
        for start, stop, block in self.iter_normalised(x):
            out[start:stop] = block.toarray() if sp.issparse(block) else block
        return out

    def transform(self, x) -> np.ndarray:
        """Project cells (counts, sparse or dense) on the fitted components: ``(n_cells, k)`` float64."""
        self._check_fitted()
        if x.shape[1] != self.components_.shape[1]:
            raise ExprflowInputError(
                f"The matrix has {x.shape[1]} genes but the reference space was fitted on "
                f"{self.components_.shape[1]}; pass cells with the train genes in the train order."
            )
        out = np.empty((x.shape[0], self.n_components_), dtype=np.float64)
        for start, stop, block in self.iter_normalised(x):
            out[start:stop] = np.asarray(block @ self.components_.T) - self._mean_projected
        return out

    def fit_transform(self, x) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def _check_fitted(self) -> None:
        if self.components_ is None:
            raise RuntimeError("ReferenceSpace is not fitted; call fit(train_matrix) first.")
