"""Fault injection (benchmarks/run_faults.py, fewer points): ``exprflow fit`` and streamed ``exprflow generate``
killed at seeded points leave the old run, the new run, a run that resumes to the uninterrupted weights, or
a clear refusal; never a mixture. Two concurrent ``fit`` on one ``--out``: exactly one trains."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import run_faults  # noqa: E402


@pytest.mark.slow
def test_killed_runs_are_never_mixed(tmp_path):
    faults = run_faults.Faults(tmp_path, seed=1)
    faults.prepare()
    points = faults.points(6)
    assert {site for kind, site, _ in points if kind == "fit"} == {"vae_step", "flow_step", "replace", "rename"}
    for i, (kind, site, n) in enumerate(points):
        result = faults.fit_point(i, site, n) if kind == "fit" else faults.generate_point(i, site, n)
        assert result["killed"], result
        assert result["state"] != "violation", result
        if kind == "fit" and result["state"] in ("resumed", "refused"):
            assert "--resume" in result["refusal"] or "--overwrite" in result["refusal"], result
    assert all(trial["ok"] for trial in faults.concurrent(1))
