"""Genes-as-a-set benchmark (issue 5): DeepSets, Set Transformer and the Geneformer / scGPT tokenizations
against the MLP, as StateFlow backbones at matched parameter counts and training budgets.

Usage::

    python -m benchmarks sets --dataset pbmc3k --seeds 0 1 2
    python -m benchmarks sets --dataset kang2018_ifnb --set params=400000
    python -m benchmarks sets --table benchmarks/results/sets_pbmc3k_a.json benchmarks/results/sets_pbmc3k_b.json

Every (backbone, seed) runs in its own worker process (``benchmarks/harness.py``): the
EVALUATION.md split (seed 0), StateFlow with that backbone (width chosen so the parameter count is the
closest to the option ``params``), the same ``max_steps`` and ``batch_size`` for all rows, generation of the
test split's cells and the protocol metrics; then a linear probe of cell type (logistic regression,
accuracy and macro-F1 on the test split) from the frozen backbone's pooled embedding ``embed(x)`` of
real cells at ``t = 1`` (for the MLP, which has no set embedding, the input of its output layer), with
a PCA-50 probe of the same cells as reference.

Costs (training step, generation, and the encoders against detected genes on real cells) are measured
by ``benchmarks/sets_cost.py``.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_common import DATASETS, grid_table, load
from harness import Benchmark, script_main

ROWS = ["deepsets", "set_transformer", "rank_tokens", "value_bins", "mlp"]
#: cell-type labels for the probe (kang2018_ifnb: control cells only; NaN elsewhere)
LABELS = {"pbmc3k": "cell_type", "kang2018_ifnb": "cell_type_kang2018", "mouse_bladder_han2018": "label_int"}
WIDTHS = [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]  # 8, 12: the MLP on 14k+ genes
BASE_KWARGS = {
    "deepsets": {"depth": 2, "phi_depth": 2},
    # two heads: at the matched widths (32-48) a head is 16-24 wide; CPU SDPA with 8-wide heads is ~3x slower
    "set_transformer": {"depth": 2, "heads": 2, "n_inducing": 16},
    "rank_tokens": {"depth": 2, "heads": 2},
    "value_bins": {"depth": 2, "heads": 2, "attention": "isab", "n_inducing": 16},  # SAB over G genes: O(G^2)
    "mlp": {"depth": 3},
}


def n_parameters(name: str, dim: int, n_conditions: int, kwargs: dict) -> int:
    """Parameter count of a backbone, built on the meta device (no memory)."""
    import torch

    from exprflow.backbones import BACKBONES

    with torch.device("meta"):
        model = BACKBONES.get(name)(dim=dim, n_conditions=n_conditions, **kwargs)
    return sum(p.numel() for p in model.parameters())


def matched_kwargs(name: str, dim: int, n_conditions: int, target: int) -> dict:
    """Backbone kwargs whose parameter count is the closest to ``target`` over the width grid."""
    best = min(WIDTHS, key=lambda w: abs(n_parameters(name, dim, n_conditions, {**BASE_KWARGS[name], "hidden": w})
                                         - target))
    return {**BASE_KWARGS[name], "hidden": best}


def embeddings(model, adata, batch_size: int = 256) -> np.ndarray:
    """Frozen pooled embeddings of real cells at ``t = 1`` (null condition), ``(n_cells, d)``."""
    import torch

    backbone = model.backbone.eval()
    captured = []
    hook = None
    if not hasattr(backbone, "embed"):  # the MLP: the input of its output layer
        hook = backbone.output_proj.register_forward_hook(lambda m, i, o: captured.append(i[0]))
    out = []
    with torch.no_grad(), model._ema_weights():
        for start in range(0, adata.n_obs, batch_size):
            x = model.representation.encode(adata.X[start : start + batch_size])
            if hook is None:
                out.append(backbone.embed(x))
            else:
                backbone(x, 1.0)
                out.append(captured.pop())
    if hook is not None:
        hook.remove()
    return torch.cat(out).numpy()


def linear_probe(train_x, train_y, test_x, test_y) -> dict:
    """Logistic-regression probe on standardised features: test accuracy and macro-F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_x, train_y)
    pred = clf.predict(test_x)
    return {"accuracy": float(accuracy_score(test_y, pred)), "macro_f1": float(f1_score(test_y, pred, average="macro"))}


def probes(model, train, test, label_key: str) -> dict:
    """Probe of cell type from the backbone's embedding and, as reference, from PCA-50 of log1p values."""
    from sklearn.decomposition import PCA

    from exprflow.representations import log_normalise

    keep_tr = train.obs[label_key].notna().to_numpy()
    keep_te = test.obs[label_key].notna().to_numpy()
    tr, te = train[keep_tr], test[keep_te]
    ytr, yte = tr.obs[label_key].astype(str).to_numpy(), te.obs[label_key].astype(str).to_numpy()
    result = {"embedding": linear_probe(embeddings(model, tr), ytr, embeddings(model, te), yte)}
    pca = PCA(50, random_state=0).fit(log_normalise(tr.X))
    result["pca50"] = linear_probe(pca.transform(log_normalise(tr.X)), ytr, pca.transform(log_normalise(te.X)), yte)
    return result


def run_one(row: str, dataset: str, seed: int, smoke: bool, params: int = 150_000, max_steps: int = 300,
            batch_size: int = 32, max_tokens: int = 512) -> dict:
    """One (backbone, seed): train, generate, evaluate, probe (in this process).

    ``params``: target parameter count of every backbone; ``max_steps``, ``batch_size``: the same for
    every row; ``max_tokens``: the rank_tokens sequence cap (Geneformer: 2,048; attention cost grows as
    its square).
    """
    import torch

    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.models import StateFlow

    key = DATASETS[dataset][1]
    adata = load(dataset, smoke)
    train, test = split_adata(adata, None, key, 0)
    n_conditions = train.obs[key].astype(str).nunique()
    if row == "rank_tokens":
        BASE_KWARGS[row]["max_tokens"] = max_tokens
    kwargs = matched_kwargs(row, adata.n_vars, n_conditions, params)
    spec = ExperimentSpec(model="state", model_kwargs={"backbone": row, "backbone_kwargs": kwargs},
                          max_steps=max_steps, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(adata, spec, Path(tmp) / "run", condition_key=key, plots=False, progress_bar=False)
        model = StateFlow.load(str(Path(tmp) / "run" / "model"))
    result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "cells_per_s", "metrics")}
    result.update(row=row, seed=seed, backbone_kwargs=kwargs, torch_threads=torch.get_num_threads(),
                  n_parameters=sum(p.numel() for p in model.backbone.parameters()),
                  probe=probes(model, train, test, "cell_type" if smoke else LABELS[dataset]),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def markdown(result: dict) -> str:
    """A column per backbone (mean ± sd over seeds), the protocol metrics, probes and costs."""
    extra = [(f"probe {score} ({source})", lambda r, s=source, k=score: r["probe"][s][k])
             for source in ("embedding", "pca50") for score in ("accuracy", "macro_f1")]
    extra += [(n, lambda r, n=n: r.get(n)) for n in ("n_parameters", "train_wall_s", "train_cpu_s", "cells_per_s",
                                                        "peak_rss_mb")]
    return grid_table(result, extra=extra)


BENCHMARK = Benchmark(
    rows={row: {"backbone": row, **BASE_KWARGS[row]} for row in ROWS},
    datasets=("pbmc3k", "kang2018_ifnb", "mouse_bladder_han2018"), run_one=run_one, table=markdown,
    options={"params": 150_000, "max_steps": 300, "batch_size": 32, "max_tokens": 512},
    smoke={"params": 5_000, "max_steps": 3, "batch_size": 8, "max_tokens": 64},
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
