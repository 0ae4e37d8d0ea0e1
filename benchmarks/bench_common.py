"""What the benchmark scripts share: the data folder and datasets (and the smoke subset), the metric names of
the tables, CPU time, mean ± sd (the runner is ``harness.py``)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import numpy as np

#: the environment variable naming the folder of the benchmark datasets (default: ../shared/data)
DATA_ENV = "EXPRFLOW_DATA"


def data_dir() -> Path:
    """The folder of the benchmark datasets: ``$EXPRFLOW_DATA``, else ``shared/data`` beside the repository."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


SHARED = data_dir()
#: name -> (path, condition key)
DATASETS = {
    "pbmc3k": (SHARED / "pbmc3k_counts.h5ad", "cell_type"),
    "kang2018_ifnb": (SHARED / "kang2018_ifnb.h5ad", "condition"),
    "mouse_bladder_han2018": (SHARED / "mouse_bladder_han2018.h5ad", "label_int"),
    "worm_neuron_cao2017": (SHARED / "worm_neuron_cao2017.h5ad", "label_int"),
}


def shared(name: str) -> Path:
    """Path of a file of the data folder (:func:`data_dir`); a clear error when it is not there."""
    from exprflow.errors import ExprflowInputError

    path = SHARED / name
    if not path.exists():
        raise ExprflowInputError(
            f"Benchmark data {path} not found. Set {DATA_ENV} to the folder that holds the datasets "
            f"({', '.join(sorted(p.name for p, _ in DATASETS.values()))}, ...); it is {SHARED} now. "
            "A smoke run (--smoke) needs none: it uses the PBMC3k counts bundled with exprflow.")
    return path


#: smoke data: cells and genes of the bundled PBMC3k kept (seconds of training)
SMOKE_CELLS, SMOKE_GENES = 400, 200
#: the 5 largest PBMC3k types -> the names of kang2018's 5 types (the smoke data's cell_type)
SMOKE_TYPES = {"B": "B cells", "CD14+ Mono": "CD14+ Monocytes", "Naive CD4 T": "CD4 T cells", "CD8 T": "CD8 T cells",
               "Memory CD4 T": "FCGR3A+ Monocytes"}


def load(dataset: str, smoke: bool = False, smoke_cells: int | None = SMOKE_CELLS):
    """A benchmark dataset as AnnData; with ``smoke``, a small subset of the bundled PBMC3k instead.

    The smoke subset (``smoke_cells`` cells, None: all, of the 5 largest cell types x ``SMOKE_GENES`` genes, seeded)
    carries every ``obs`` column the benchmarks read, drawn at random where PBMC3k has none:
    ``condition`` (ctrl / stim, with stim cells' counts of the first 20 genes doubled), ``donor``,
    ``sample_id`` (condition + donor), ``label_int``, ``cell_type_kang2018``, ``Hours`` (0, 24, 48, 72)
    and a pseudotime lineage (``pseudotime_lineage1``, ``weight_lineage1``).
    """
    from exprflow.data import read_adata

    if not smoke:
        path = DATASETS[dataset][0] if dataset in DATASETS else SHARED / f"{dataset}.h5ad"
        return read_adata(shared(path.name) if path.parent == SHARED else path)
    return smoke_adata(smoke_cells)


def smoke_adata(n_cells: int | None = SMOKE_CELLS):
    """The smoke subset of :func:`load` (a fresh copy)."""
    import pandas as pd
    import scipy.sparse as sp

    from exprflow.datasets import pbmc3k

    adata = pbmc3k()
    rng = np.random.default_rng(0)
    rows = np.flatnonzero(adata.obs["cell_type"].astype(str).isin(SMOKE_TYPES).to_numpy())
    rows = np.sort(rng.choice(rows, min(n_cells or rows.size, rows.size), replace=False))
    sub = adata[rows, :SMOKE_GENES].copy()
    n = sub.n_obs
    stim = rng.random(n) < 0.5
    donor = np.where(rng.random(n) < 0.5, "101", "107")
    X = sp.csr_matrix(sub.X, dtype=np.float32)
    X[:, :20] = X[:, :20].multiply(np.where(stim, 2.0, 1.0)[:, None])
    sub.X = sp.csr_matrix(X)
    condition = np.where(stim, "stim", "ctrl")
    # named as kang2018's five types, so that a benchmark holding out a named type finds it (smoke only)
    sub.obs["cell_type"] = pd.Categorical(sub.obs["cell_type"].astype(str).map(SMOKE_TYPES))
    sub.obs["condition"] = pd.Categorical(condition)
    sub.obs["donor"] = pd.Categorical(donor)
    sub.obs["sample_id"] = pd.Categorical(np.char.add(condition.astype(str), donor.astype(str)))
    sub.obs["label_int"] = sub.obs["cell_type"].cat.codes.astype(int)
    sub.obs["cell_type_kang2018"] = sub.obs["cell_type"]
    sub.obs["Hours"] = rng.choice([0, 24, 48, 72], n)
    sub.obs["pseudotime_lineage1"] = rng.random(n)
    sub.obs["weight_lineage1"] = 1.0
    return sub
RATIOS = ["w2", "mmd", "energy", "coverage"]  # quoted as ratios to the floor
RAW = ["c2st_knn", "c2st_lr", "dcr", "pearson_mean", "pearson_var", "pearson_zero_frac", "label_accuracy"]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def status_mb(field: str = "VmRSS") -> float:
    """A memory field of ``/proc/self/status`` in MB (``VmRSS``: current RSS, ``VmHWM``: its peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def mean_sd(values) -> str:
    """``mean ± sd`` (sample sd) of the non-None values; just the value for one; ``n/a`` for none."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if v.size > 1 else "")


def grid_table(result: dict, rows: list[str] | None = None, extra: list[tuple[str, object]] = (),
               title: str | None = None) -> str:
    """Markdown table of a grid result: a column per row (mean ± sd over seeds) and the floor.

    ``result``: ``{"dataset", "seeds", "torch_threads", "runs"}``, each run a dict with ``row`` and the
    protocol's ``metrics`` (the runner's result, ``harness.as_result``, or an older single-file result).

    Lines: the protocol ratios to the floor, the raw metrics (with the floor's value), then ``extra``:
    ``(label, getter)`` pairs where ``getter(run)`` reads one value from a run (e.g. training seconds).
    """
    runs = result["runs"]
    rows = rows or list(dict.fromkeys(r["row"] for r in runs))
    by = {row: [r for r in runs if r["row"] == row] for row in rows}
    title = title or f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}"
    lines = [title, "", "| metric | " + " | ".join(rows) + " | floor |", "|---|" + "---|" * (len(rows) + 1)]

    def line(label, get, floor=""):
        lines.append(f"| {label} | " + " | ".join(_cell(get, by[row]) for row in rows) + f" | {floor} |")

    for name in RATIOS:
        line(f"{name} / floor", lambda r, n=name: r["metrics"]["ratio_to_floor"].get(n), "1")
    for name in RAW:
        line(name, lambda r, n=name: r["metrics"]["metrics"].get(n),
             mean_sd(r["metrics"]["floor"].get(name) for r in runs))
    for label, get in extra:
        line(label, get)
    return "\n".join(lines)


def _cell(get, runs: list[dict]) -> str:
    values = [v for v in (get(r) for r in runs) if v is not None]
    if values and all(isinstance(v, int) and v == values[0] for v in values):
        return f"{values[0]:,}"  # a constant count (e.g. parameters): no mean ± sd
    return mean_sd(values)


def save_figure(fig, path: Path, title: str, fontsize: int | None = None) -> None:
    """Give ``fig`` its title, lay it out and write it to ``path`` (folders created), then close it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, **({} if fontsize is None else {"fontsize": fontsize}))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
