"""Run directories: one owner at a time (lock), models swapped in whole, readers refuse unfinished or mixed runs."""

import json
import logging
import socket
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli
from exprflow.errors import ExprflowInputError
from exprflow.io import load_any_model
from exprflow.models import StateFlow
from exprflow.training.checkpoint import read_checkpoint
from exprflow.runs.run_dir import (RECORD_KEY, check_run_dir, check_run_readable, finish_run_dir, read_run,
                                     record_phase, start_run_dir)
from exprflow.runs.run_lock import LOCK_FILE, RunLock, read_lock

TINY = {"hidden": 16, "depth": 1}
OPTIONS = {"data": "train.h5ad", "model": "state", "train": {"max_steps": 3}}


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = StateFlow(make_counts_adata(n_cells=80, n_genes=20, seed=1), condition_key="cell_type",
                      backbone_kwargs=TINY)
    return model.train(max_steps=3, batch_size=16, progress_bar=False)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _complete_run(out, model, options=OPTIONS):
    with RunLock(out):
        check_run_dir(out, options, overwrite=True, resume=False)
        start_run_dir(out, options, resume=False)
        finish_run_dir(out, model)


# --------------------------------------------------------------------------- the lock
def test_lock_is_exclusive_and_released(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        owner = read_lock(out)
        assert owner["pid"] > 0 and owner["host"] == socket.gethostname()
        with pytest.raises(ExprflowInputError, match="in use by process"):
            RunLock(out).acquire()
        assert read_lock(out) == owner  # the refused attempt left the owner's lock alone
    assert not out.exists()  # created by the lock, nothing written: removed again
    out.mkdir()
    (out / "keep").write_text("x")
    with RunLock(out):
        pass
    assert (out / "keep").exists() and not (out / LOCK_FILE).exists()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0}))
    with caplog.at_level(logging.WARNING, logger="exprflow"), RunLock(out) as lock:
        assert read_lock(out)["pid"] == lock.owner["pid"]
    assert "no longer runs" in caplog.text
    assert out.exists() and not (out / LOCK_FILE).exists()  # released; a directory it did not create stays


def test_a_directory_left_empty_by_a_killed_fit_counts_as_new(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0,
                                             "created_dir": True}))
    with RunLock(out):
        check_run_dir(out, OPTIONS, overwrite=False, resume=False)  # no "already exists"


def test_lock_from_another_host_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": 0}))
    with pytest.raises(ExprflowInputError, match="another machine") as err:
        RunLock(out).acquire()
    assert str(out / LOCK_FILE) in str(err.value)


def test_fit_on_a_locked_directory_exits_2_before_reading_data(tmp_path):
    data = tmp_path / "train.h5ad"
    make_counts_adata(n_cells=40, n_genes=10).write_h5ad(data)
    out = tmp_path / "run"
    with RunLock(out):
        r = CliRunner().invoke(cli, ["fit", "--data", str(data), "--model", "state", "--max-steps", "2",
                                     "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 2 and "in use by process" in r.output and "Traceback" not in r.output
    assert not (out / "run.json").exists()


# --------------------------------------------------------------------------- records and swaps
def test_records_phases_and_swaps_the_model_whole(tmp_path, trained):
    out = tmp_path / "run"
    _complete_run(out, trained)
    options, record = read_run(out)
    assert options == OPTIONS and record["status"] == "complete" and record["model_config_sha256"]
    check_run_readable(out)
    first_id = record["id"]

    with RunLock(out):  # --overwrite: the old run is invalid before training starts
        start_run_dir(out, OPTIONS, resume=False)
        (out / "checkpoints").mkdir()
        record_phase(out / "checkpoints" / "vae.ckpt")
    _, record = read_run(out)  # killed here: the old model is still in model/, but is no longer served
    assert record["status"] == "running" and record["id"] != first_id and (out / "model").exists()
    with pytest.raises(ExprflowInputError, match="did not finish.*vae.*--resume"):
        load_any_model(out)
    with pytest.raises(ExprflowInputError, match="did not finish"):
        StateFlow.load(str(out / "model"))
    (out / f"model.tmp-{record['id']}").mkdir()  # leftover of an interrupted swap
    with RunLock(out):
        start_run_dir(out, OPTIONS, resume=True)
        assert not (out / f"model.tmp-{record['id']}").exists() and read_run(out)[1]["id"] == record["id"]
        finish_run_dir(out, trained)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "model", "run.json"]
    assert read_run(out)[1]["phases"] == ["vae"]
    assert load_any_model(out).var_names == trained.var_names


def test_readers_refuse_a_running_or_mixed_run(tmp_path, trained):
    out = tmp_path / "run"
    _complete_run(out, trained)
    with RunLock(out):
        start_run_dir(out, OPTIONS, resume=False)
        with pytest.raises(ExprflowInputError, match="still being trained by process"):
            check_run_readable(out)
    _complete_run(out, trained)
    cfg = out / "model" / "config.json"
    cfg.write_text(cfg.read_text().replace('"train_seconds"', '"train_seconds_"'))
    with pytest.raises(ExprflowInputError, match="mixed from two runs"):
        load_any_model(out)
    saved = json.loads((out / "run.json").read_text())  # a run written before run records: still readable
    del saved[RECORD_KEY]
    (out / "run.json").write_text(json.dumps(saved))
    assert load_any_model(out).var_names == trained.var_names


def test_resume_refuses_a_finished_run_and_accepts_an_interrupted_one(tmp_path, trained):
    out = tmp_path / "run"
    _complete_run(out, trained)
    with pytest.raises(ExprflowInputError, match="finished already"):
        check_run_dir(out, OPTIONS, overwrite=False, resume=True)
    with pytest.raises(ExprflowInputError, match="already exists.*--overwrite"):
        check_run_dir(out, OPTIONS, overwrite=False, resume=False)
    start_run_dir(out, OPTIONS, resume=False)
    check_run_dir(out, OPTIONS, overwrite=False, resume=True)  # interrupted: resumable


# --------------------------------------------------------------------------- guards on what is read
def test_truncated_config_and_gene_mismatch_are_clear_errors(tmp_path, trained):
    model_dir = tmp_path / "m"
    trained.save(str(model_dir))
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["var_names"] = cfg["var_names"][:-1]  # one gene fewer than the weights
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExprflowInputError, match="do not fit its config.json"):
        load_any_model(model_dir)
    (model_dir / "config.json").write_text('{"model": "StateFlow", "var_na')
    with pytest.raises(ExprflowInputError, match="not valid JSON"):
        load_any_model(model_dir)


def test_pickled_code_is_refused_without_pytorch_unsafe_advice(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": np.random.default_rng(0)}, path)  # an object, not tensors
    with pytest.raises(ExprflowInputError, match="pickled") as err:
        read_checkpoint(path)
    assert "weights_only" not in str(err.value)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model": "StateFlow"}))
    torch.save({"w": np.random.default_rng(0)}, model_dir / "weights.pt")
    with pytest.raises(ExprflowInputError, match="pickled") as err:
        StateFlow.load(str(model_dir))
    assert "weights_only" not in str(err.value)


def test_warns_about_single_cell_levels_and_all_zero_genes(caplog):
    adata = make_counts_adata(n_cells=40, n_genes=12, seed=2)
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.add_categories(["lonely"])
    adata.obs.iloc[0, 0] = "lonely"
    dense = adata.X.toarray()
    dense[:, 3] = 0
    adata.X = sp.csr_matrix(dense)
    with caplog.at_level(logging.WARNING, logger="exprflow"):
        StateFlow(adata, condition_key="cell_type", backbone_kwargs=TINY)
    assert "['lonely']" in caplog.text and "single cell" in caplog.text
    assert "1 of 12 genes are zero in every cell" in caplog.text and "gene3" in caplog.text


def test_a_swap_interrupted_between_its_renames_is_refused_then_resumed(tmp_path, trained, monkeypatch):
    import os

    out = tmp_path / "run"
    _complete_run(out, trained)
    real_rename, calls = os.rename, []

    def dies_on_second(src, dst):  # old model -> trash done, new model -> model never happens
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_rename(src, dst)

    with RunLock(out):
        start_run_dir(out, OPTIONS, resume=False)
        monkeypatch.setattr(os, "rename", dies_on_second)
        with pytest.raises(KeyboardInterrupt):
            finish_run_dir(out, trained)
        monkeypatch.setattr(os, "rename", real_rename)
    assert not (out / "model").exists() and any(p.name.startswith("model.trash-") for p in out.iterdir())
    with pytest.raises(ExprflowInputError, match="did not finish.*--resume"):
        load_any_model(out)
    check_run_dir(out, OPTIONS, overwrite=False, resume=True)
    with RunLock(out):
        start_run_dir(out, OPTIONS, resume=True)
        finish_run_dir(out, trained)
    assert sorted(p.name for p in out.iterdir()) == ["model", "run.json"]
    assert load_any_model(out).var_names == trained.var_names
