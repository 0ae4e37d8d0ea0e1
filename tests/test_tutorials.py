"""The documentation's tutorials (docs/tutorials/*.py) run as written, so they cannot rot.

Each script runs in a fresh Python process (one thread) in a temporary folder, with ``EXPRFLOW_DATA``
pointing at the shared data sets; a tutorial whose data set is absent is skipped. Budgets are the
scripts' own (tiny). Marked ``tutorial`` (about 75 s together): ``.ci/run`` runs them after the default
suite with ``python -m pytest -m tutorial``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import SHARED_DATA, shared_path

pytestmark = pytest.mark.tutorial

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"

# tutorial -> (data file it needs or None, files it must write relative to its working folder)
CASES = {
    "latent_flow.py": (None, ["tutorial_latent_flow/umap.png", "tutorial_latent_flow/report.md",
                              "tutorial_latent_flow/model/config.json"]),
    "state_flow.py": (None, []),
    "trajectories.py": ("paul15_pseudotime.h5ad", ["tutorial_trajectories/trajectories.png",
                                                   "tutorial_trajectories/model/config.json"]),
    "perturbation.py": ("kang2018_ifnb_small_labeled.h5ad", []),
}


def test_every_tutorial_is_tested():
    assert sorted(p.name for p in TUTORIALS.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tutorial_runs(name, tmp_path):
    needs, outputs = CASES[name]
    if needs is not None:
        shared_path(needs)  # skips when the data set is absent
    # One thread: the tutorials' networks are small, and extra OpenMP threads only spin when the tests
    # share the cores with other work.
    env = dict(os.environ, EXPRFLOW_DATA=str(SHARED_DATA), MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(TUTORIALS / name)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for rel in outputs:
        assert (tmp_path / rel).stat().st_size > 0, f"{name} did not write {rel}"
