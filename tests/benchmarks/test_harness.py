"""The benchmark runner (benchmarks/harness.py, ``python -m benchmarks``) and every benchmark's smoke run.

``test_smoke`` is the one parametrised test over the registry: each declared benchmark runs its smoke
configuration through the runner (worker processes, result files, table); each standalone script with
``SMOKE_ARGS`` runs them. Most are marked slow (the default suite stays fast); .ci/run runs them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import harness  # noqa: E402

#: smoke runs in the default suite (about 20 s on one core): a harness benchmark and a standalone script.
#: The others are marked slow; .ci/run runs them all after the default suite, so no script can rot.
FAST = {"latent", "vae_step"}


def _env(**extra) -> dict:
    pythonpath = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath, **extra}


def _runner(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def _params():
    for name in harness.scripts():
        marks = [] if name in FAST else [pytest.mark.slow]
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_smoke(name, tmp_path):
    path = harness.scripts()[name]
    if not harness.is_declared(path):
        if harness.script_smoke_args(path) is None:
            pytest.skip(f"{name} is a one-off measurement without SMOKE_ARGS (see benchmarks/README.md)")
        proc = _runner(name, "--smoke")
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    proc = _runner(name, "--smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = harness.load(name)
    folders = [f for f in (tmp_path / name).iterdir() if f.is_dir()]
    assert len(folders) == len(bench.smoke_datasets or bench.datasets[:1])
    for folder in folders:
        records = harness.read_records(folder)
        assert {r["row"] for r in records} == set(bench.smoke_rows or _default_rows(bench, records[0]["dataset"]))
        for r in records:
            assert r["smoke"] and r["seed"] == 0 and r["metrics"]
            p = r["provenance"]
            assert p["threads"] == 1 and p["cpu_s"] > 0 and p["wall_s"] > 0 and p["peak_rss_mb"] > 0
            assert p["exprflow_version"] and p["git_commit"]
        table = (folder / "table.md").read_text()
        assert "SMOKE configuration" in table and "|" in table
        assert json.loads((folder / "merged.json").read_text()).keys() == {r["row"] for r in records}


def _default_rows(bench, dataset):
    rows = bench.default_rows.get(dataset) if isinstance(bench.default_rows, dict) else bench.default_rows
    return rows or bench.rows


def test_list_names_every_script_once():
    proc = _runner("--list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == list(harness.scripts())
    assert {"latent", "sets", "run_faults", "ddp_scaling"} <= set(names)
    kinds = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()}
    assert kinds["latent"] == "harness" and kinds["run_faults"] == "script"


def test_unknown_name_and_bad_option_fail_clearly(tmp_path):
    proc = _runner("no_such_benchmark")
    assert proc.returncode == 2 and "No benchmark named" in proc.stderr
    proc = _runner("latent", "--smoke", "--set", "no_such_option=1", "--out", str(tmp_path))
    assert proc.returncode == 2 and "no option" in proc.stderr and "Traceback" not in proc.stderr
    proc = _runner("latent", "--smoke", "--rows", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and "no row" in proc.stderr


def test_standalone_args_pass_through():
    proc = _runner("run_faults", "--", "--help")
    assert proc.returncode == 0 and "--kills" in proc.stdout


def test_missing_data_dir_names_the_variable():
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import bench_common as b\n"
            "try:\n    b.load('pbmc3k')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(EXPRFLOW_DATA="/no/such/folder"),
                          capture_output=True, text=True)
    assert "ExprflowInputError" in proc.stdout and "EXPRFLOW_DATA" in proc.stdout and "/no/such/folder" in proc.stdout


def test_resume_skips_done_jobs_and_refuses_another_config(tmp_path):
    folder = tmp_path / "latent" / "pbmc3k"
    folder.mkdir(parents=True)
    bench = harness.load("latent")
    opts = {**bench.options, **bench.smoke}
    record = {"benchmark": "latent", "dataset": "pbmc3k", "row": "state", "seed": 0, "smoke": True,
              "config": {**bench.rows["state"], **opts}, "metrics": {}, "provenance": {}}
    (folder / "state_seed0.json").write_text(json.dumps(record))
    jobs, _ = harness.plan(bench, "latent", "pbmc3k", ["latent:nb", "state"], [0], True, {}, 1, tmp_path)
    assert [(j.row, j.seed) for j in jobs] == [("latent:nb", 0)]
    assert jobs[0].path == str(folder / "latent-nb_seed0.json") and jobs[0].options == opts
    from exprflow.errors import ExprflowInputError

    with pytest.raises(ExprflowInputError, match="another configuration"):
        harness.plan(bench, "latent", "pbmc3k", ["state"], [0], True, {"max_steps": 7}, 1, tmp_path)


def test_merge_seeds_mean_sd():
    records = [{"row": "a", "seed": s, "metrics": {"x": {"y": v}, "flag": True, "name": "n"},
                "provenance": {"cpu_s": 2.0 * v}} for s, v in enumerate([1.0, 3.0])]
    merged = harness.merge_seeds(records)
    assert merged["a"]["metrics.x.y"] == {"mean": 2.0, "sd": pytest.approx(2 ** 0.5), "n": 2}
    assert merged["a"]["cost.cpu_s"]["mean"] == 4.0 and "metrics.flag" not in merged["a"]


def test_older_results_still_print(tmp_path):
    """The single-file results of the older scripts print through the same table functions."""
    for name, files in [("latent", ["latent_pbmc3k.json"]), ("populations", ["populations_kang_small.json"]),
                        ("conditions", ["conditions_kang_small.json"]), ("trajectories", ["trajectories.json"])]:
        text = harness.legacy_table(name, [REPO / "benchmarks" / "results" / f for f in files])
        assert "|" in text and "±" in text, name
