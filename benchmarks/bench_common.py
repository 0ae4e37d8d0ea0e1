"""What the benchmark scripts share: the datasets, the metric names of the tables, CPU time, mean ± sd."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: name -> (path, condition key)
DATASETS = {
    "pbmc3k": (SHARED / "pbmc3k_counts.h5ad", "cell_type"),
    "kang2018_ifnb": (SHARED / "kang2018_ifnb.h5ad", "condition"),
}
RATIOS = ["w2", "mmd", "energy", "coverage"]  # quoted as ratios to the floor
RAW = ["c2st_knn", "c2st_lr", "dcr", "pearson_mean", "pearson_var", "pearson_zero_frac", "label_accuracy"]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def mean_sd(values) -> str:
    """``mean ± sd`` (sample sd) of the non-None values; just the value for one; ``n/a`` for none."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if v.size > 1 else "")
