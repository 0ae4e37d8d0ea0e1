"""Fault injection: kill ``exprflow fit`` and streamed ``exprflow generate`` at seeded points, check what is left.

    OMP_NUM_THREADS=1 python benchmarks/run_faults.py --kills 32 --seed 0 [--work DIR] [--json OUT.json]

A kill point is a site and a count: the child process sends itself SIGKILL right before the n-th call of
that site. Sites: a training step of the VAE phase or of the flow phase, ``os.replace`` (checkpoints,
run.json, model files, parts of a streamed output), ``os.rename`` (the model swap), ``shutil.rmtree``
(removing the old model or checkpoints), a part write of a streamed generation. The count is drawn
uniformly from the calls an uninterrupted run makes (counted once first), so points cover every phase.

Training points kill ``fit --overwrite`` over an old complete run (or a fresh ``fit``, alternately);
after each the directory must be one of:

* ``old``: the old complete run (``generate`` serves exactly the old weights);
* ``new``: the new run, complete (exactly the weights of an uninterrupted run);
* ``resumed``: refused by ``generate`` with a clear message (exit 2), and ``fit --resume`` then ends
  with exactly the weights of an uninterrupted run;
* ``refused``: refused clearly by ``generate`` and by ``fit --resume``; ``fit --overwrite`` then trains it;

anything else (a traceback, a model served that is neither run's, different weights after resuming) is
a violation. Generation points must leave no output or the complete output, and ``--resume`` must end
with the cells of an uninterrupted streamed run. Two concurrent ``fit`` on one ``--out``: exactly one
trains, the other exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: the smoke configuration of ``python -m benchmarks run_faults --smoke`` (seconds; ``{tmp}``: a temporary folder)
SMOKE_ARGS = ["--kills", "2", "--concurrent", "1", "--work", "{tmp}/work", "--json", "{tmp}/run_faults.json"]

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # this checkout's exprflow, in this process and (PYTHONPATH) in the children

# Child: run the CLI and SIGKILL this process right before the n-th call of a site ("count" mode writes
# the number of calls of every site to the file given instead of n).
CHILD = r"""
import json, os, shutil, signal, sys
import torch
torch.set_num_threads(1)
site, n = sys.argv[1], sys.argv[2]
calls = {}

def hook(name, fn):
    def wrapped(*a, **k):
        calls[name] = calls.get(name, 0) + 1
        if name == site and n != "count" and calls[name] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*a, **k)
    return wrapped

from exprflow.training.plans import FlowTrainingPlan
from exprflow.training.vae_plan import VAETrainingPlan
from exprflow.data.h5ad_parts import PartStore
VAETrainingPlan.training_step = hook("vae_step", VAETrainingPlan.training_step)
FlowTrainingPlan.training_step = hook("flow_step", FlowTrainingPlan.training_step)
PartStore.write = hook("part", PartStore.write)
os.replace = hook("replace", os.replace)
os.rename = hook("rename", os.rename)
shutil.rmtree = hook("rmtree", shutil.rmtree)
from exprflow.cli import cli
try:
    cli(args=sys.argv[4:], prog_name="exprflow", standalone_mode=False)
    code = 0
except SystemExit as exc:
    code = exc.code or 0
if n == "count":
    with open(sys.argv[3], "w") as fh:
        json.dump(calls, fh)
sys.exit(code)
"""

FIT_SITES = ("vae_step", "flow_step", "replace", "rename", "rmtree")
GEN_SITES = ("part", "replace")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def child(site: str, n: int | str, args: list, count_file: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", CHILD, site, str(n), str(count_file or "-"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env())


def cli(*args) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, output)."""
    from click.testing import CliRunner

    from exprflow.cli import cli as group

    r = CliRunner().invoke(group, [str(a) for a in args])
    text = r.output + ("" if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception))
    return r.exit_code, text


def weights(run: Path) -> dict:
    import torch

    return torch.load(run / "model" / "weights.pt", weights_only=True)


def same(a: dict, b: dict) -> bool:
    import torch

    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def clear_refusal(code: int, text: str) -> bool:
    return code == 2 and text.startswith("error:") and "Traceback" not in text


class Faults:
    def __init__(self, work: Path, seed: int) -> None:
        self.work, self.rng = work, np.random.default_rng(seed)
        self.data = work / "train.h5ad"
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from synthetic import make_counts_adata

        make_counts_adata(n_cells=160, n_genes=30, seed=4).write_h5ad(self.data)
        self.base = ["fit", "--data", self.data, "--condition-key", "cell_type", "--model", "latent", "--max-steps", 20,
                     "--flow-steps", 20, "--batch-size", 32, "--checkpoint-every", 5]
        self.results: list[dict] = []

    def fit_args(self, seed: int, out: Path, *extra) -> list:
        return [*self.base, "--seed", seed, "--out", out, *extra]

    def gen_args(self, run: Path, out: Path, *extra) -> list:
        return ["generate", run, "--n-cells", 200, "--chunk-size", 25, "--n-steps", 4, "--out", out, *extra]

    def prepare(self) -> None:
        self.old, self.ref = self.work / "old", self.work / "ref"
        for seed, out in ((0, self.old), (1, self.ref)):
            code, text = cli(*self.fit_args(seed, out))
            assert code == 0, text
        self.old_w, self.ref_w = weights(self.old), weights(self.ref)
        counts = self.work / "fit_calls.json"
        self.fit_calls = {}  # calls of each site by a fresh fit, and by fit --overwrite over the old run
        for over_old in (False, True):
            run = self.work / f"counted_{over_old}"
            if over_old:
                shutil.copytree(self.old, run)
            proc = child("none", "count", self.fit_args(1, run, *(["--overwrite"] if over_old else [])), counts)
            assert proc.returncode == 0, proc.stderr[-2000:]
            self.fit_calls[over_old] = json.loads(counts.read_text())
        code, text = cli(*self.gen_args(self.ref, self.work / "ref_cells.h5ad"))
        assert code == 0, text
        import anndata as ad

        self.ref_cells = ad.read_h5ad(self.work / "ref_cells.h5ad").X.toarray()
        proc = child("none", "count", self.gen_args(self.ref, self.work / "counted.h5ad"), counts)
        assert proc.returncode == 0, proc.stderr[-2000:]
        self.gen_calls = json.loads(counts.read_text())

    def points(self, kills: int) -> list[tuple[str, str, int]]:
        n_gen = max(2, kills // 5)
        out = []
        for i in range(kills - n_gen):  # even points: fit --overwrite over the old run; odd: a fresh fit
            site, calls = FIT_SITES[i % len(FIT_SITES)], self.fit_calls[i % 2 == 0]
            out.append(("fit", site, int(self.rng.integers(1, calls[site] + 1))))
        for i in range(n_gen):
            site = GEN_SITES[i % len(GEN_SITES)]
            out.append(("generate", site, int(self.rng.integers(1, self.gen_calls[site] + 1))))
        return out

    def fit_point(self, i: int, site: str, n: int) -> dict:
        run = self.work / f"p{i}"
        over_old = i % 2 == 0  # as drawn in points()
        if over_old:
            shutil.copytree(self.old, run)
        proc = child(site, n, self.fit_args(1, run, *(["--overwrite"] if over_old else [])))
        killed = proc.returncode == -9
        result = {"kind": "fit", "site": site, "n": n, "over_old_run": over_old, "killed": killed}
        if not killed and proc.returncode != 0:
            return {**result, "state": "violation", "why": proc.stderr[-1500:]}
        code, text = cli("generate", run, "--n-cells", 10, "--n-steps", 2, "--out", self.work / f"p{i}.h5ad")
        if code == 0:
            w = weights(run)
            state = "old" if over_old and same(w, self.old_w) else "new" if same(w, self.ref_w) else "violation"
            return {**result, "state": state, **({"why": "served a model of neither run"} if state == "violation" else {})}
        if not clear_refusal(code, text):
            return {**result, "state": "violation", "why": text[-1500:]}
        result["refusal"] = text.strip()[:300]
        code, text = cli(*self.fit_args(1, run, "--resume"))
        if code == 0:
            ok = same(weights(run), self.ref_w)
            return {**result, "state": "resumed" if ok else "violation", **({} if ok else {"why": "resumed weights differ"})}
        if not clear_refusal(code, text):
            return {**result, "state": "violation", "why": text[-1500:]}
        result["resume_refusal"] = text.strip()[:300]
        code, text = cli(*self.fit_args(1, run, "--overwrite"))
        ok = code == 0 and same(weights(run), self.ref_w)
        return {**result, "state": "refused" if ok else "violation", **({} if ok else {"why": text[-1500:]})}

    def generate_point(self, i: int, site: str, n: int) -> dict:
        import anndata as ad

        out = self.work / f"g{i}.h5ad"
        proc = child(site, n, self.gen_args(self.ref, out))
        result = {"kind": "generate", "site": site, "n": n, "killed": proc.returncode == -9}

        def matches() -> bool:
            return np.array_equal(ad.read_h5ad(out).X.toarray(), self.ref_cells)

        if out.exists() and not matches():
            return {**result, "state": "violation", "why": "a partial or different output file"}
        if out.exists():
            return {**result, "state": "complete"}
        code, text = cli(*self.gen_args(self.ref, out, "--resume"))
        ok = code == 0 and matches()
        return {**result, "state": "resumed" if ok else "violation", **({} if ok else {"why": text[-1500:]})}

    def concurrent(self, trials: int) -> list[dict]:
        out = []
        for t in range(trials):
            run = self.work / f"both{t}"
            cmd = [sys.executable, "-m", "exprflow.cli", *map(str, self.fit_args(1, run))]
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
                     for _ in range(2)]
            codes = sorted(p.wait() for p in procs)
            errs = " ".join(p.stderr.read() for p in procs)
            ok = codes == [0, 2] and same(weights(run), self.ref_w) and "Traceback" not in errs
            out.append({"trial": t, "exit_codes": codes, "ok": ok})
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrent", type=int, default=3, help="trials of two fit on one --out")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="exprflow_faults_"))
    work.mkdir(parents=True, exist_ok=True)
    start, cpu0 = time.time(), _cpu()
    faults = Faults(work, args.seed)
    faults.prepare()
    for i, (kind, site, n) in enumerate(faults.points(args.kills)):
        res = faults.fit_point(i, site, n) if kind == "fit" else faults.generate_point(i, site, n)
        faults.results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k not in ("refusal", "resume_refusal")}), flush=True)
    concurrent = faults.concurrent(args.concurrent)
    summary = summarise(faults.results, concurrent, time.time() - start, _cpu() - cpu0)
    summary["fit_calls"] = {"fresh": faults.fit_calls[False], "over_old_run": faults.fit_calls[True]}
    summary["generate_calls"] = faults.gen_calls
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "points": faults.results, "concurrent": concurrent},
                                        indent=2))


def summarise(results: list[dict], concurrent: list[dict], wall: float, cpu: float) -> dict:
    states: dict[str, int] = {}
    for r in results:
        key = f"{r['kind']}:{r['state']}"
        states[key] = states.get(key, 0) + 1
    return {"points": len(results), "killed": sum(r["killed"] for r in results),
            "violations": sum(r["state"] == "violation" for r in results), "states": states,
            "concurrent_trials": len(concurrent), "concurrent_ok": sum(c["ok"] for c in concurrent),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    main()
