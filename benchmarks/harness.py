"""One runner for every benchmark: declarations, worker processes, resumable result files, seed merging.

A benchmark script declares ``BENCHMARK = Benchmark(...)``: its rows (name -> config), datasets, default
seeds, options (defaults, and the overrides of its ``--smoke`` configuration), one
``run_one(row, dataset, seed, smoke, **options) -> dict`` and its table (and optionally a figure).
:func:`run` executes every (row, dataset, seed) in its own worker process (``python -m benchmarks
--worker``), so threads and peak memory are the job's own, skips the jobs whose result file already
exists (resume), and writes each result atomically as ``OUT/NAME/DATASET/ROW_seedN.json`` with its
provenance. Then it merges the seeds (``merged.json``: mean, sd and n of every number) and writes the
benchmark's ``table.md`` (and ``figure.png``). Scripts without a declaration (one-off measurements) are
listed too and run through :func:`run_script`, their arguments passed through.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
#: modules of benchmarks/ that are not benchmarks
NOT_BENCHMARKS = {"__init__", "__main__", "harness", "bench_common"}
logger = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark declares; the runner does the rest.

    Parameters
    ----------
    rows
        Row name -> its config (recorded in every result of the row). A row is the unit of work that
        runs in one worker process.
    datasets
        The datasets it runs on by default (names of ``bench_common.DATASETS`` or its own).
    run_one
        ``run_one(row, dataset, seed, smoke, **options) -> dict``: one job, in the worker process.
    table
        ``table(result) -> str``: markdown from a result dict ``{"dataset", "seeds", "torch_threads",
        "runs"}`` whose runs are ``run_one``'s dicts with ``row`` and ``seed`` added (the layout of the
        older single-file results, so those print with the same function).
    seeds
        Default seeds (one model seed per job; the data split stays the protocol's).
    options
        Keyword options of ``run_one`` and their defaults (``--set KEY=VALUE`` overrides them).
    smoke
        Option overrides of the smoke configuration (with ``smoke=True``, ``run_one`` also reads the
        bundled PBMC3k subset of ``bench_common.load``).
    default_rows
        Rows run when ``--rows`` is not given (default: all), or dataset -> those rows.
    smoke_rows
        Rows of the smoke configuration (default: ``default_rows``).
    once_rows
        Rows run for the first seed only (seed-independent measurements).
    smoke_datasets
        Datasets of the smoke configuration (default: the first of ``datasets``); a smoke run reads the
        bundled PBMC3k subset whatever their names.
    figure
        Optional ``figure(result, path)``.
    """

    rows: Mapping[str, dict]
    datasets: tuple[str, ...]
    run_one: Callable[..., dict]
    table: Callable[[dict], str]
    seeds: tuple[int, ...] = (0, 1, 2)
    options: Mapping[str, object] = field(default_factory=dict)
    smoke: Mapping[str, object] = field(default_factory=dict)
    default_rows: tuple[str, ...] | Mapping[str, tuple[str, ...]] | None = None
    smoke_rows: tuple[str, ...] | None = None
    once_rows: tuple[str, ...] = ()
    smoke_datasets: tuple[str, ...] | None = None
    figure: Callable[[dict, Path], None] | None = None


# ---------------------------------------------------------------- the registry (the scripts of benchmarks/)


def scripts() -> dict[str, Path]:
    """Every benchmark script by name (its stem), sorted."""
    return {p.stem: p for p in sorted(HERE.glob("*.py")) if p.stem not in NOT_BENCHMARKS}


def _module_ast(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def summary(path: Path) -> str:
    """First line of a script's docstring (read without importing it)."""
    doc = ast.get_docstring(_module_ast(path)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _assigned(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


def is_declared(path: Path) -> bool:
    """Whether the script declares ``BENCHMARK = Benchmark(...)`` (runs on the harness)."""
    return _assigned(_module_ast(path), "BENCHMARK") is not None


def script_smoke_args(path: Path) -> list[str] | None:
    """``SMOKE_ARGS`` of a standalone script (a literal list of arguments), or None."""
    node = _assigned(_module_ast(path), "SMOKE_ARGS")
    return None if node is None else [str(a) for a in ast.literal_eval(node.value)]


def load(name: str) -> Benchmark:
    """Import a declared benchmark (``benchmarks/`` on ``sys.path``, as when a script is run directly)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(name).BENCHMARK


def unknown(name: str) -> str:
    return f"No benchmark named {name!r}. Known: {', '.join(scripts())} (python -m benchmarks --list)."


# ---------------------------------------------------------------- result files


def row_file(row: str, seed: int) -> str:
    """``ROW_seedN.json`` with the row name made safe for a file name (``latent:nb`` -> ``latent-nb``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", row) + f"_seed{seed}.json"


def git_commit() -> str:
    """The repository's commit (``+dirty`` when the work tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def read_records(folder: Path) -> list[dict]:
    """The per-job result records of one ``OUT/NAME/DATASET`` folder."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*_seed*.json"))]


def as_result(records: list[dict], dataset: str) -> dict:
    """Records -> the result dict of a benchmark's table: ``{"dataset", "seeds", "torch_threads", "runs"}``."""
    runs = [{**r["metrics"], "row": r["row"], "seed": r["seed"]} for r in records]
    threads = sorted({r["provenance"]["threads"] for r in records})
    return {"dataset": dataset, "seeds": sorted({r["seed"] for r in records}),
            "torch_threads": threads[0] if len(threads) == 1 else threads, "runs": runs,
            "wall_s": sum(r["provenance"]["wall_s"] for r in records),
            "cpu_s": sum(r["provenance"]["cpu_s"] for r in records)}


def _numbers(value, prefix: str = ""):
    """Dotted paths and values of every number in a nested dict (bools and lists left out)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        yield prefix, float(value)


def merge_seeds(records: list[dict]) -> dict:
    """Per row, every number of the metrics over seeds: ``{row: {path: {"mean", "sd", "n"}}}`` (sample sd)."""
    merged: dict = {}
    for row in dict.fromkeys(r["row"] for r in records):
        values: dict[str, list[float]] = {}
        for rec in (r for r in records if r["row"] == row):
            for path, v in _numbers({"metrics": rec["metrics"], "cost": rec["provenance"]}):
                values.setdefault(path, []).append(v)
        merged[row] = {p: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                           "n": len(v)} for p, v in values.items()}
    return merged


def provenance_note(records: list[dict]) -> str:
    """One line under a table: commits, versions, threads, the jobs' summed CPU and wall seconds."""
    p = [r["provenance"] for r in records]
    commits = sorted({x["git_commit"][:12] + ("+dirty" if x["git_commit"].endswith("+dirty") else "") for x in p})
    return (f"_{len(records)} jobs; exprflow {', '.join(sorted({x['exprflow_version'] for x in p}))}, commit "
            f"{', '.join(commits)}; threads {sorted({x['threads'] for x in p})}; "
            f"{sum(x['cpu_s'] for x in p):,.0f} CPU-s, {sum(x['wall_s'] for x in p):,.0f} wall-s in all; "
            f"peak RSS up to {max(x['peak_rss_mb'] for x in p):,.0f} MB"
            f"{'; SMOKE configuration (not a measurement)' if any(r['smoke'] for r in records) else ''}._")


def write_summary(bench: Benchmark, name: str, folder: Path) -> str:
    """Merge the seeds of one dataset folder: ``merged.json``, ``table.md`` (and ``figure.png``); the table."""
    from exprflow.io import write_text_atomic

    records = read_records(folder)
    if not records:
        return ""
    result = as_result(records, records[0]["dataset"])
    write_text_atomic(json.dumps(merge_seeds(records), indent=2), folder / "merged.json")
    text = f"## {name}: {records[0]['dataset']}\n\n{bench.table(result)}\n\n{provenance_note(records)}\n"
    write_text_atomic(text, folder / "table.md")
    if bench.figure is not None:
        bench.figure(result, folder / "figure.png")
    return text


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class Job:
    name: str
    row: str
    dataset: str
    seed: int
    smoke: bool
    options: dict
    threads: int
    path: str
    commit: str


def worker(job: Job) -> None:
    """Run one job in this process and write its record atomically to ``job.path``."""
    import torch

    from exprflow import __version__
    from exprflow.io import write_text_atomic

    torch.set_num_threads(job.threads)
    bench = load(job.name)
    load0 = os.getloadavg()[0]
    u0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    metrics = bench.run_one(job.row, job.dataset, job.seed, job.smoke, **job.options)
    wall = time.perf_counter() - w0
    u1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime + c1.ru_utime + c1.ru_stime
    record = {
        "benchmark": job.name, "dataset": job.dataset, "row": job.row, "seed": job.seed, "smoke": job.smoke,
        "config": {**bench.rows[job.row], **job.options},
        "provenance": {"exprflow_version": __version__, "git_commit": job.commit, "threads": job.threads,
                       "torch_threads": torch.get_num_threads(), "cpu_s": cpu, "wall_s": wall,
                       "peak_rss_mb": max(u1.ru_maxrss, c1.ru_maxrss) / 1024, "load_avg_1min": [load0, os.getloadavg()[0]],
                       "python": sys.version.split()[0], "torch": torch.__version__,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "metrics": metrics,
    }
    write_text_atomic(json.dumps(record, indent=2, default=_json_default), job.path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _spawn(job: Job) -> tuple[Job, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), "MKL_NUM_THREADS": str(job.threads)}
    pythonpath = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--worker", json.dumps(job.__dict__)], cwd=REPO,
                          env={**env, "PYTHONPATH": pythonpath}, capture_output=True, text=True)
    logger.warning("%s %s %s seed %d: %s in %.0f s", job.name, job.dataset, job.row, job.seed,
                   "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})", time.perf_counter() - start)
    return job, proc.returncode, proc.stderr[-4000:]


def plan(bench: Benchmark, name: str, dataset: str, rows, seeds, smoke: bool, options: dict, threads: int,
         out: Path) -> tuple[list[Job], Path]:
    """The jobs of one dataset still to run, and its folder (a result of the same config is kept; another
    config is an error)."""
    from exprflow.errors import ExprflowInputError

    opts = {**bench.options, **(bench.smoke if smoke else {}), **options}
    unknown_opts = sorted(set(options) - set(bench.options))
    if unknown_opts:
        raise ExprflowInputError(f"{name} has no option {unknown_opts}; its options: {dict(bench.options)}.")
    bad = [r for r in rows if r not in bench.rows]
    if bad:
        raise ExprflowInputError(f"{name} has no row {bad}; its rows: {list(bench.rows)}.")
    folder, commit, jobs = out / name / re.sub(r"[^A-Za-z0-9_.+-]", "-", dataset), git_commit(), []
    for seed in seeds:
        for row in rows:
            if row in bench.once_rows and seed != seeds[0]:
                continue
            path = folder / row_file(row, seed)
            if path.exists():
                old = json.loads(path.read_text())
                if old["config"] != json.loads(json.dumps({**bench.rows[row], **opts})) or old["smoke"] != smoke:
                    raise ExprflowInputError(
                        f"{path} holds a result of another configuration ({old['config']}, smoke "
                        f"{old['smoke']}); pass another --out, or delete that file to run it again.")
                continue
            jobs.append(Job(name, row, dataset, seed, smoke, opts, threads, str(path), commit))
    return jobs, folder


def run(name: str, datasets=None, rows=None, seeds=None, *, smoke: bool = False, options: dict | None = None,
        jobs: int = 1, threads: int = 1, out: Path = RESULTS) -> int:
    """Run a declared benchmark's missing jobs in worker processes, then merge and write the tables.

    Returns the number of failed jobs (their stderr is logged).
    """
    bench = load(name)
    # a smoke run reads the bundled PBMC3k subset whatever the dataset (bench_common.load): one dataset
    datasets = list(datasets or ((bench.smoke_datasets or bench.datasets[:1]) if smoke else bench.datasets))
    seeds = list(seeds if seeds is not None else ([0] if smoke else bench.seeds))
    todo, folders, n_jobs = [], [], 0
    for dataset in datasets:
        default = bench.default_rows.get(dataset) if isinstance(bench.default_rows, Mapping) else bench.default_rows
        rows_d = list(rows or (bench.smoke_rows if smoke else None) or default or bench.rows)
        more, folder = plan(bench, name, dataset, rows_d, seeds, smoke, options or {}, threads, Path(out))
        todo, folders = todo + more, folders + [folder]
        n_jobs += sum(1 for seed in seeds for row in rows_d if row not in bench.once_rows or seed == seeds[0])
    logger.warning("%s: %d jobs to run (%d already done), %d at a time, %d thread(s) each", name, len(todo),
                   n_jobs - len(todo), jobs, threads)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        done = list(pool.map(_spawn, todo))
    failed = [(job, err) for job, rc, err in done if rc != 0]
    for job, err in failed:
        logger.warning("%s %s seed %d failed:\n%s", job.row, job.dataset, job.seed, err)
    for folder in folders:
        text = write_summary(bench, name, folder)
        if text:
            sys.stdout.write(text + "\n")
    return len(failed)


def run_script(name: str, args: list[str], threads: int = 1, smoke: bool = False) -> int:
    """Run a standalone script with ``args`` (or, ``smoke``, its ``SMOKE_ARGS`` then ``args``); its exit status.

    A smoke run reads the data folder of the bundled datasets (``EXPRFLOW_DATA`` set to it: PBMC3k only)
    and ``{tmp}`` in ``SMOKE_ARGS`` is a temporary folder, removed afterwards.
    """
    import tempfile

    from exprflow.datasets import bundled_path
    from exprflow.errors import ExprflowInputError

    path = scripts()[name]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if not smoke:
        return subprocess.run([sys.executable, str(path), *args], env=env).returncode
    smoke_args = script_smoke_args(path)
    if smoke_args is None:
        raise ExprflowInputError(f"{name} has no smoke configuration (no SMOKE_ARGS in {path.name}): it is a "
                                 "one-off measurement that needs its own data or software (see its docstring).")
    with tempfile.TemporaryDirectory() as tmp:
        env["EXPRFLOW_DATA"] = str(bundled_path("pbmc3k").parent)
        cmd = [sys.executable, str(path), *(a.replace("{tmp}", tmp) for a in smoke_args), *args]
        return subprocess.run(cmd, env=env).returncode


def legacy_table(name: str, files: list[Path]) -> str:
    """The table of saved results: per-job records or the older single-file results (their runs merged)."""
    bench = load(name)
    parts = [json.loads(Path(f).read_text()) for f in files]
    if all("provenance" in p for p in parts):  # per-job records of this runner
        return bench.table(as_result(parts, parts[0]["dataset"]))
    if len(parts) == 1 or any("runs" not in p for p in parts):  # one file (or a layout of its own): as saved
        return bench.table(parts[0])
    result = {**parts[0], "runs": [r for p in parts for r in p["runs"]],
              "seeds": sorted({s for p in parts for s in p.get("seeds", [])})}
    return bench.table(result)


def script_main(path: str) -> int:
    """``python benchmarks/NAME.py ARGS`` of a declared benchmark: the same as ``python -m benchmarks NAME ARGS``."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.__main__ import main

    return main([Path(path).stem, *sys.argv[1:]])
