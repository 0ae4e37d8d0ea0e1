"""evaluate() with a condition key also scores the whole population (all_cells), without changing the
per-condition protocol; format_report explains each metric in one line."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest
from test_metrics_protocol import METRICS, conditional, parts  # noqa: F401  (shared fixtures)

import exprflow.metrics.protocol as protocol
from exprflow.metrics import evaluate, format_report


def test_all_cells_beside_the_averages(conditional):
    assert list(conditional["all_cells"]) == METRICS and list(conditional["all_cells_floor"]) == METRICS
    assert set(conditional["all_cells_ratio_to_floor"]) == {"w2", "mmd", "energy", "coverage"}
    n = conditional["all_cells_n"]
    assert n["n_test"] == sum(v["n_test"] for v in conditional["per_condition_n"].values()) == 120
    assert conditional["all_cells_ratio_to_floor"]["energy"] < 3  # real held-out cells: near the floor
    json.dumps(conditional, allow_nan=False)


def test_pooled_step_leaves_the_protocol_unchanged(parts, conditional, monkeypatch):
    train, test, gen = parts
    monkeypatch.setattr(protocol, "_add_all_cells", lambda *a, **k: None)
    without = evaluate(test, gen, train, condition_key="cell_type")
    for key in ("metrics", "floor", "ratio_to_floor", "per_condition", "per_condition_floor"):
        assert without[key] == conditional[key]


def test_pooled_metrics_see_wrong_proportions(parts, conditional):
    train, test, gen = parts
    type0 = gen[gen.obs["cell_type"] == "type0"]
    skewed = ad.concat([gen, type0, type0, type0], index_unique="-")  # 4x too many type0 cells
    out = evaluate(test, skewed, train, condition_key="cell_type")
    assert out["all_cells_ratio_to_floor"]["energy"] > 2 * conditional["all_cells_ratio_to_floor"]["energy"]
    assert out["ratio_to_floor"]["energy"] < 2 * conditional["ratio_to_floor"]["energy"] + 0.5


def test_report_says_what_each_metric_means(conditional):
    text = format_report(conditional)
    assert "All cells pooled" in text
    assert "- `c2st_knn`:" in text and "0.5" in text and "- `w2`:" in text and "1x" in text
    assert "docs/evaluation.md" in text and "EVALUATION.md" not in text.replace("docs/evaluation.md", "")
    meaning_lines = [line for line in text.splitlines() if line.startswith("- `")]
    assert len(meaning_lines) == len(conditional["metrics"])  # one line per metric
    assert np.all(["good" in line for line in meaning_lines])
