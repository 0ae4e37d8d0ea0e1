"""Markdown rendering of an ``evaluate`` result."""

from __future__ import annotations

PER_CONDITION_COLUMNS: tuple[str, ...] = ("w2", "energy", "c2st_knn", "coverage", "dcr", "label_accuracy")


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
        + (f", condition `{result['condition_key']}` (averaged over levels)" if result.get("condition_key") else "")
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
    unavailable = {f"{row}.{name}": why for row, reasons in result.get("unavailable", {}).items()
                   for name, why in reasons.items()}
    notes = list(result.get("notes", [])) + [f"{key}: {why}" for key, why in unavailable.items()]
    if notes:
        lines += ["", "### Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
