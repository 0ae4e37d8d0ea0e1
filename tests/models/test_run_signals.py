"""The demo's run directory (exprflow.experiment) under the run lock and record; SIGTERM / Ctrl-C release the lock."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli
from exprflow.errors import ExprflowInputError
from exprflow.experiment import ExperimentSpec, run_experiment
from exprflow.io import load_any_model
from exprflow.runs.run_dir import read_run
from exprflow.runs.run_lock import LOCK_FILE, RunInterrupted, RunLock, read_lock, stop_on_signals

SPEC = ExperimentSpec(model="state", model_kwargs={"backbone_kwargs": {"hidden": 16, "depth": 1}}, max_steps=3,
                      batch_size=32, n_steps=2)
FILES = ("model", "generated.h5ad", "metrics.json", "config.json", "report.md", "run.json")


@pytest.fixture(scope="module")
def adata():
    return make_counts_adata(n_cells=360, n_genes=30, seed=4)


def _run(adata, out, **kwargs):
    return run_experiment(adata, SPEC, out, condition_key="cell_type", plots=False, progress_bar=False, **kwargs)


# --------------------------------------------------------------------------- the demo's run directory
def test_experiment_writes_a_complete_locked_run(tmp_path, adata):
    out = tmp_path / "demo"
    _run(adata, out)
    assert all((out / name).exists() for name in FILES)
    options, record = read_run(out)
    assert options["experiment"]["model"] == "state" and record["status"] == "complete"
    assert not (out / LOCK_FILE).exists() and not list(out.glob("model.*"))  # released, no swap leftovers
    assert list(load_any_model(out).var_names) == list(adata.var_names)
    first_id = record["id"]

    with pytest.raises(ExprflowInputError, match="already exists. Pass --overwrite,") as err:
        _run(adata, out)
    assert "--resume" not in str(err.value)  # the demo has no --resume
    _run(adata, out, overwrite=True)
    _, record = read_run(out)
    assert record["status"] == "complete" and record["id"] != first_id


def test_experiment_refuses_a_locked_directory(tmp_path, adata):
    out = tmp_path / "demo"
    with RunLock(out):
        with pytest.raises(ExprflowInputError, match="in use by process"):
            _run(adata, out)
        assert not (out / "run.json").exists()


def test_interrupted_experiment_is_refused_and_lock_released(tmp_path, adata, monkeypatch):
    out = tmp_path / "demo"
    _run(adata, out)

    def killed(*args, **kwargs):
        raise RunInterrupted(signal.SIGTERM)

    monkeypatch.setattr("exprflow.run_report.write_report", killed)  # killed after generated.h5ad was written
    with pytest.raises(RunInterrupted):
        _run(adata, out, overwrite=True)
    _, record = read_run(out)
    assert record["status"] == "running" and not (out / LOCK_FILE).exists()
    assert not (out / "report.md").exists()  # the old run's report was removed when the new run started
    with pytest.raises(ExprflowInputError, match=r"did not finish.*exprflow demo .*--overwrite"):
        load_any_model(out)
    with pytest.raises(ExprflowInputError, match="did not finish"):
        load_any_model(out / "model")
    r = CliRunner().invoke(cli, ["generate", str(out), "--n-cells", "5", "--out", str(tmp_path / "g.h5ad")],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "did not finish" in r.output


def test_demo_on_a_locked_directory_exits_2(tmp_path):
    out = tmp_path / "demo"
    with RunLock(out):
        owner = read_lock(out)
        r = CliRunner().invoke(cli, ["demo", "--model", "state", "--max-steps", "2", "--out", str(out)],
                               catch_exceptions=False)
        assert r.exit_code == 2 and "in use by process" in r.output and "Traceback" not in r.output
        assert read_lock(out) == owner and not (out / "run.json").exists()


# --------------------------------------------------------------------------- signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_unwinds_and_releases_the_lock(tmp_path, signum):
    out = tmp_path / "run"
    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as err:
        with stop_on_signals(), RunLock(out):
            assert read_lock(out)["pid"] == os.getpid()
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler interrupts this
    assert err.value.code == 128 + signum and err.value.signum == signum
    assert not (out / LOCK_FILE).exists()
    assert signal.getsignal(signum) is before  # the previous handler is back


def test_handlers_restored_after_a_normal_exit_and_untouched_off_the_main_thread():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before

    seen = []

    def worker():
        with stop_on_signals():  # signal.signal would raise ValueError off the main thread
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [before]


def test_sigterm_to_a_process_releases_its_lock(tmp_path):
    """A scheduler's SIGTERM: the process exits with 143 and leaves no stale lock."""
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import time
        from exprflow.runs.run_lock import RunLock, stop_on_signals
        with stop_on_signals(), RunLock({str(out)!r}):
            open({str(out / "started")!r}, "w").close()
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(200):
        if (out / "started").exists():
            break
        time.sleep(0.05)
    assert read_lock(out)["pid"] == proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert not (out / LOCK_FILE).exists()
