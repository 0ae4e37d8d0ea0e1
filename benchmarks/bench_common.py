"""What the benchmark scripts share: the datasets, the metric names of the tables, CPU time, mean ± sd."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: name -> (path, condition key)
DATASETS = {
    "pbmc3k": (SHARED / "pbmc3k_counts.h5ad", "cell_type"),
    "kang2018_ifnb": (SHARED / "kang2018_ifnb.h5ad", "condition"),
    "mouse_bladder_han2018": (SHARED / "mouse_bladder_han2018.h5ad", "label_int"),
}
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


def run_grid(script: str, dataset: str, rows: list[str], seeds: list[int], out: Path | None, result: dict,
             extra_args: list[str] = ()) -> dict:
    """Run every (row, seed) as ``script --dataset D --worker row,seed`` in its own child process.

    A child prints its result as one JSON line (last line of stdout). ``result["runs"]`` collects them and
    is written atomically to ``out`` after every run; runs already in ``out`` are kept (resume).
    """
    from exprflow.io import write_text_atomic

    if out is not None and out.exists():
        result["runs"] = json.loads(out.read_text())["runs"]
    result.setdefault("runs", [])
    done = {(r["row"], r["seed"]) for r in result["runs"]}
    for seed in seeds:
        for row in rows:
            if (row, seed) in done:
                continue
            cmd = [sys.executable, script, "--dataset", dataset, "--worker", f"{row},{seed}", *extra_args]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                logging.warning("%s seed %d failed:\n%s", row, seed, proc.stderr[-3000:])
                continue
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            result["runs"].append(run)
            result["torch_threads"] = run["torch_threads"]
            m = run["metrics"]
            logging.warning("%s seed %d: energy %.2fx floor, c2st_knn %.3f, train %.0f s (%.0f s in all)", row, seed,
                            m["ratio_to_floor"]["energy"], m["metrics"]["c2st_knn"], run["train_wall_s"],
                            time.perf_counter() - start)
            if out is not None:
                write_text_atomic(json.dumps(result, indent=2), out)
    return result


def grid_table(result: dict, rows: list[str] | None = None, extra: list[tuple[str, object]] = (),
               title: str | None = None) -> str:
    """Markdown table of a :func:`run_grid` result: a column per row (mean ± sd over seeds) and the floor.

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


def grid_main(script: str, args, run_one, markdown, result: dict, extra: list[str]) -> None:
    """The three modes of a grid benchmark (``--table FILES``, ``--worker row,seed``, the grid itself).

    ``--table``: merge the runs (and seeds) of saved results and print the markdown table; ``--worker``:
    run one ``(row, seed)`` with ``run_one(args, row, seed)`` and print its JSON to the parent; else run
    ``args.rows`` x ``args.seeds`` in worker processes (:func:`run_grid`) and log the table.
    """
    if args.table:
        results = [json.loads(p.read_text()) for p in args.table]
        seeds = sorted({s for res in results for s in res.get("seeds", [])})
        merged = {**results[0], "seeds": seeds, "runs": [r for res in results for r in res["runs"]]}
        print(markdown(merged))  # noqa: T201 (a script's output)
        return
    if args.worker:
        row, seed = args.worker.rsplit(",", 1)
        print(json.dumps(run_one(args, row, int(seed))))  # noqa: T201 (to the parent)
        return
    result = run_grid(script, args.dataset, args.rows, args.seeds, args.out, result, extra)
    logging.warning("\n%s", markdown(result))
