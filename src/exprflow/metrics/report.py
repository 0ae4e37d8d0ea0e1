"""Markdown rendering of an ``evaluate`` result."""

from __future__ import annotations

PER_CONDITION_COLUMNS: tuple[str, ...] = ("w2", "energy", "c2st_knn", "coverage", "dcr", "label_accuracy")

#: one line per metric: what it measures, and what good looks like (docs/metrics.md says more)
METRIC_MEANINGS: dict[str, str] = {
    "w2": "2-Wasserstein distance between the generated and real cell clouds (30 PCs); good: ratio near 1x",
    "mmd": "maximum mean discrepancy (RBF kernels, four scales): differences in shape; good: ratio near 1x",
    "energy": "energy distance: location and spread, missing or extra clusters; good: ratio near 1x",
    "c2st_knn": "AUROC of a 10-NN classifier telling generated from real cells; good: near the floor, about 0.5 "
                "(1.0: every generated cell is recognisable)",
    "c2st_lr": "the same with logistic regression (linear differences); good: near the floor, about 0.5",
    "coverage": "fraction of real cells with a generated cell among their 5 nearest neighbours; good: ratio near 1x "
                "(low: cell states never generated)",
    "dcr": "distance of generated cells to the nearest TRAIN cell, over real test cells'; good: near 1 "
           "(well below 1: training cells are copied)",
    "pearson_mean": "correlation of per-gene mean expression; good: at the floor, close to 1",
    "pearson_var": "correlation of per-gene variances; good: at the floor (much lower: cells too smooth)",
    "pearson_zero_frac": "correlation of per-gene fractions of zero counts; good: at the floor",
    "library_size_mad": "difference of mean total counts per cell; good: at or below the floor",
    "library_size_rel_diff": "the same relative to the real mean library size; good: at or below the floor",
    "label_accuracy": "a classifier trained on real cells recovers the requested condition; good: at the floor",
}


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_report(result: dict) -> str:
    """A Markdown report: metric | model | floor | ratio table, per-condition summary and notes."""
    lines = [
        f"## exprflow evaluation (protocol v{result.get('protocol_version')})",
        "",
        f"{result.get('n_generated')} generated vs {result.get('n_test')} real test cells "
        f"({result.get('n_compared')} compared), {result.get('n_train')} real train cells, seed {result.get('seed')}"
        + (f", condition `{result['condition_key']}` (main table: averaged over levels)"
           if result.get("condition_key") else "")
        + ".",
        "",
        "| metric | model | floor | ratio |",
        "|---|---|---|---|",
    ]
    metrics, floor, ratios = result.get("metrics", {}), result.get("floor", {}), result.get("ratio_to_floor", {})
    for name, value in metrics.items():
        ratio = ratios.get(name)
        lines.append(f"| {name} | {_fmt(value)} | {_fmt(floor.get(name))} | "
                     f"{'' if ratio is None and name not in ratios else _fmt(ratio) + 'x'} |")
    if result.get("all_cells"):
        pooled, pooled_floor = result["all_cells"], result.get("all_cells_floor", {})
        pooled_ratios = result.get("all_cells_ratio_to_floor", {})
        lines += ["", "### All cells pooled (conditions in the requested proportions)", "",
                  "| metric | model | floor | ratio |", "|---|---|---|---|"]
        for name, value in pooled.items():
            ratio = pooled_ratios.get(name)
            lines.append(f"| {name} | {_fmt(value)} | {_fmt(pooled_floor.get(name))} | "
                         f"{'' if ratio is None else _fmt(ratio) + 'x'} |")
    per_condition = result.get("per_condition")
    if per_condition:
        per_floor = result.get("per_condition_floor", {})
        sizes = result.get("per_condition_n", {})
        lines += ["", "### Per condition (model / floor)", "",
                  "| level | n test | n generated | " + " | ".join(PER_CONDITION_COLUMNS) + " |",
                  "|---" * (3 + len(PER_CONDITION_COLUMNS)) + "|"]
        for level, values in per_condition.items():
            n = sizes.get(level, {})
            level_floor = per_floor.get(level, {})
            cells = [f"{_fmt(values.get(c))} / {_fmt(level_floor.get(c))}" for c in PER_CONDITION_COLUMNS]
            lines.append(f"| {level} | {n.get('n_test', '')} | {n.get('n_generated', '')} | "
                         + " | ".join(cells) + " |")
    lines += ["", "### What the metrics mean", "",
              "Read each value against the floor (real train cells vs the same real test cells): a distance "
              "ratio of 1x is as close as real cells get. Protocol: docs/evaluation.md; more: docs/metrics.md.", ""]
    lines += [f"- `{name}`: {METRIC_MEANINGS[name]}" for name in metrics if name in METRIC_MEANINGS]
    unavailable = {f"{row}.{name}": why for row, reasons in result.get("unavailable", {}).items()
                   for name, why in reasons.items()}
    notes = list(result.get("notes", [])) + [f"{key}: {why}" for key, why in unavailable.items()]
    if notes:
        lines += ["", "### Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
