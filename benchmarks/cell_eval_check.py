"""The project's field metrics vs Arc Institute's ``cell-eval`` on the same arrays.

Two steps, two interpreters (``cell-eval`` lives in its own venv outside the repository)::

    python -m venv /work/venv-celleval && /work/venv-celleval/bin/pip install cell-eval
    OMP_NUM_THREADS=1 python benchmarks/cell_eval_check.py write --dir /tmp/celleval_check
    OMP_NUM_THREADS=1 /work/venv-celleval/bin/python benchmarks/cell_eval_check.py compare --dir /tmp/celleval_check \\
        --out benchmarks/results/cell_eval_check.json

``write``: kang2018_ifnb_small_labeled with CD14+ Monocytes held out (the benchmark's protocol); predictions
of the mean shift and ridge baselines; real and predicted AnnData in cell-eval's layout (perturbation =
each held-out type's ``stim``, control = its real control cells) and this project's metrics as JSON. For
the discrimination score, which needs several perturbations, a second pair treats the stimulated cells
of each of the 5 cell types as a perturbation against the pooled control cells, deliberately mispredicted
(type t by the mean shift applied to the control cells of the next type) so that the ranks vary. ``compare``: cell-eval's metrics on those files, side by side with ours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kang2018_ifnb_small_labeled.h5ad"
HELD_OUT = "CD14+ Monocytes"
PAIRS = ["pearson_delta", "mae", "overlap_at_N", "overlap_at_100", "de_direction_match", "discrimination_score_l1"]
OURS = {"pearson_delta": "pearson_delta_all", "mae": "mae", "overlap_at_N": "de_overlap_at_N",
        "overlap_at_100": "de_overlap_at_100", "de_direction_match": "de_direction_agreement"}


def write(out: Path) -> None:
    import anndata as ad

    from exprflow.metrics.perturbation import cell_eval_anndata, discrimination_score, field_metrics
    from exprflow.models.perturbation_baselines import BASELINES

    out.mkdir(parents=True, exist_ok=True)
    adata = ad.read_h5ad(DATA)
    is_t, is_c = (adata.obs["cell_type"] == HELD_OUT).to_numpy(), (adata.obs["condition"] == "ctrl").to_numpy()
    train, ctrl, stim = adata[~(is_t & ~is_c)].copy(), adata[is_t & is_c].copy(), adata[is_t & ~is_c]
    ours = {}
    keys = dict(condition_key="condition", control_group="ctrl", cell_type_key="cell_type")
    for name in ("mean_shift", "ridge"):
        pred = BASELINES.get(name)().fit(train, **keys).predict(ctrl, "stim", seed=0)
        m = field_metrics(pred, stim.X, ctrl.X)
        ours[name] = {k: v for k, v in m.items() if k != "effect"}
        cell_eval_anndata({"ctrl": ctrl.X, "stim": pred}, adata.var_names).write_h5ad(out / f"pred_{name}.h5ad")
    cell_eval_anndata({"ctrl": ctrl.X, "stim": stim.X}, adata.var_names).write_h5ad(out / "real.h5ad")
    # several perturbations: each type's stim cells against the pooled control cells
    types = sorted(adata.obs["cell_type"].unique())
    shift = BASELINES.get("mean_shift")().fit(adata, **keys)
    real_cells, pred_cells, real_eff, pred_eff = {"ctrl": adata.X[is_c]}, {"ctrl": adata.X[is_c]}, [], []
    from exprflow.metrics.perturbation import mean_expression

    m_ctrl = mean_expression(adata.X[is_c])
    for i, t in enumerate(types):  # type t predicted from the control cells of the next type: ranks vary
        rows_c = is_c & (adata.obs["cell_type"] == types[(i + 1) % len(types)]).to_numpy()
        rows_s = ~is_c & (adata.obs["cell_type"] == t).to_numpy()
        real_cells[t], pred_cells[t] = adata.X[rows_s], shift.predict(adata[rows_c], "stim", seed=0)
        real_eff.append(mean_expression(real_cells[t]) - m_ctrl)
        pred_eff.append(mean_expression(pred_cells[t]) - m_ctrl)
    cell_eval_anndata(real_cells, adata.var_names).write_h5ad(out / "multi_real.h5ad")
    cell_eval_anndata(pred_cells, adata.var_names).write_h5ad(out / "multi_pred.h5ad")
    ours["multi_discrimination_score_l1"] = dict(zip(types, discrimination_score(np.array(pred_eff),
                                                                                  np.array(real_eff)).tolist()))
    (out / "ours.json").write_text(json.dumps(ours, indent=2))


def compare(out: Path, result: Path | None) -> None:
    import anndata as ad
    from cell_eval import MetricsEvaluator
    from cell_eval.metrics import discrimination_score
    from cell_eval._types import PerturbationAnndataPair

    ours = json.loads((out / "ours.json").read_text())
    real = ad.read_h5ad(out / "real.h5ad")
    rows = {}
    for name in ("mean_shift", "ridge"):
        ev = MetricsEvaluator(adata_pred=ad.read_h5ad(out / f"pred_{name}.h5ad"), adata_real=real.copy(),
                              control_pert="ctrl", pert_col="target", num_threads=1, outdir=str(out / f"ce_{name}"))
        results, _ = ev.compute(profile="full", write_csv=False)
        table = results.to_pandas().set_index("perturbation") if "perturbation" in results.columns else results.to_pandas()
        ce = table.loc["stim"] if "stim" in table.index else table.iloc[0]
        rows[name] = {k: {"cell_eval": float(ce[k]), "exprflow": ours[name][OURS[k]]} for k in OURS if k in ce}
    pair = PerturbationAnndataPair(real=ad.read_h5ad(out / "multi_real.h5ad"), pred=ad.read_h5ad(out / "multi_pred.h5ad"),
                                   pert_col="target", control_pert="ctrl")
    ce_disc = discrimination_score(pair, metric="l1", exclude_target_gene=False)
    rows["discrimination_score_l1 (5 types as perturbations)"] = {
        t: {"cell_eval": float(ce_disc[t]), "exprflow": v} for t, v in ours["multi_discrimination_score_l1"].items()}
    diffs = [abs(v["cell_eval"] - v["exprflow"]) for r in rows.values() for v in r.values()]
    summary = {"max_abs_difference": float(max(diffs)), "rows": rows}
    text = json.dumps(summary, indent=2)
    print(text)
    if result is not None:
        result.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["write", "compare"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    a = parser.parse_args()
    write(a.dir) if a.mode == "write" else compare(a.dir, a.out)


if __name__ == "__main__":
    main()
