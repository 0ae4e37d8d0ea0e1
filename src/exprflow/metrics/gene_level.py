"""Count-level metrics on the gene space (docs/evaluation.md, "Count-level metrics").

Per-gene statistics are accumulated over row chunks (sparse stays sparse):

- mean and variance (ddof=1) of the normalised values (``log1p`` of counts scaled to 10,000 per cell;
  ``log1p`` only for non-count data), the same normalisation as the reference space;
- zero fraction on the raw values;
- library size (total raw count per cell), for count data only.

Metrics between generated and real test cells:

- ``pearson_mean`` / ``pearson_var`` / ``pearson_zero_frac``: Pearson correlation across ALL genes of
  the per-gene statistic. Genes that are constant (e.g. all-zero) in one set are kept: they have a
  well-defined mean, variance and zero fraction. The correlation is undefined only when a whole
  statistic vector is constant; then the metric is ``None`` with the reason.
- ``library_size_mad``: ``|mean(lib_gen) - mean(lib_test)|``, the absolute difference of the mean
  library sizes (our reading of "mean absolute difference of cells' library sizes": generated and real
  cells are unpaired, so differences are taken between the means), and ``library_size_rel_diff`` =
  that value / ``mean(lib_test)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from exprflow.metrics.reference import TARGET_SUM, normalise_rows, row_chunks
from exprflow.metrics.undefined import MetricUndefined

GENE_METRICS: tuple[str, ...] = (
    "pearson_mean", "pearson_var", "pearson_zero_frac", "library_size_mad", "library_size_rel_diff",
)


@dataclass(frozen=True)
class GeneStatistics:
    """Per-gene statistics of one set of cells; ``library_size`` is per cell (None for non-count data)."""

    n_cells: int
    mean: np.ndarray
    var: np.ndarray
    zero_frac: np.ndarray
    library_size: np.ndarray | None


def gene_statistics(x, *, counts: bool = True, target_sum: float = TARGET_SUM,
                    chunk_size: int = 1024) -> GeneStatistics:
    """Per-gene mean/variance (normalised), zero fraction (raw) and per-cell library sizes of ``x``."""
    n_cells, n_genes = x.shape
    total = np.zeros(n_genes)
    total_sq = np.zeros(n_genes)
    nonzero = np.zeros(n_genes)
    library = np.empty(n_cells)
    for start, stop in row_chunks(n_cells, chunk_size):
        raw = x[start:stop]
        norm = normalise_rows(raw, counts=counts, target_sum=target_sum)
        if sp.issparse(raw):
            raw = sp.csr_matrix(raw)
            nonzero += np.bincount(raw.indices[raw.data != 0], minlength=n_genes)
            library[start:stop] = np.asarray(raw.sum(axis=1), dtype=np.float64).ravel()
            total += np.asarray(norm.sum(axis=0)).ravel()
            total_sq += np.asarray(norm.multiply(norm).sum(axis=0)).ravel()
        else:
            raw = np.asarray(raw)
            nonzero += (raw != 0).sum(axis=0)
            library[start:stop] = raw.sum(axis=1, dtype=np.float64)
            total += norm.sum(axis=0)
            total_sq += (norm * norm).sum(axis=0)
    mean = total / n_cells
    var = np.maximum(total_sq - n_cells * mean**2, 0.0) / max(n_cells - 1, 1)
    return GeneStatistics(
        n_cells=n_cells,
        mean=mean,
        var=var,
        zero_frac=1.0 - nonzero / n_cells,
        library_size=library if counts else None,
    )


def pearson(a: np.ndarray, b: np.ndarray, name: str) -> float:
    """Pearson correlation of two per-gene vectors; ``MetricUndefined`` if either is constant."""
    for label, v in (("generated", a), ("real", b)):
        if np.ptp(v) == 0.0:
            raise MetricUndefined(f"{name}: the {label} per-gene values are the same for all genes; "
                                  "the correlation is undefined")
    a_c, b_c = a - a.mean(), b - b.mean()
    r = float(a_c @ b_c / np.sqrt((a_c @ a_c) * (b_c @ b_c)))
    return min(max(r, -1.0), 1.0)


def gene_level_metrics(gen: GeneStatistics, real: GeneStatistics) -> tuple[dict[str, float | None], dict[str, str]]:
    """Count-level metrics of generated vs real statistics: ``(values, reasons for the None values)``."""
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    computations = {
        "pearson_mean": lambda: pearson(gen.mean, real.mean, "pearson_mean"),
        "pearson_var": lambda: pearson(gen.var, real.var, "pearson_var"),
        "pearson_zero_frac": lambda: pearson(gen.zero_frac, real.zero_frac, "pearson_zero_frac"),
        "library_size_mad": lambda: _library_size_diff(gen, real, relative=False),
        "library_size_rel_diff": lambda: _library_size_diff(gen, real, relative=True),
    }
    for name, compute in computations.items():
        try:
            values[name] = compute()
        except MetricUndefined as exc:
            values[name], reasons[name] = None, str(exc)
    return values, reasons


def _library_size_diff(gen: GeneStatistics, real: GeneStatistics, *, relative: bool) -> float:
    if gen.library_size is None or real.library_size is None:
        raise MetricUndefined("library size is defined for count data only (counts=False)")
    real_mean = float(real.library_size.mean())
    diff = abs(float(gen.library_size.mean()) - real_mean)
    if not relative:
        return diff
    if real_mean <= 0.0:
        raise MetricUndefined("library_size_rel_diff: the real cells' mean library size is 0")
    return diff / real_mean
