"""Thread settings: small flow steps on one thread, wide steps on the available cores, a user override,
the previous count restored, and ``exprflow --threads``."""

from __future__ import annotations

import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner

from exprflow import threads
from exprflow.backbones import BACKBONES
from exprflow.errors import ExprflowInputError
from exprflow.flows import RectifiedFlow
from exprflow.training.fit import fit_plan
from exprflow.training.plans import FlowTrainingPlan, OptimConfig


@pytest.fixture(autouse=True)
def _restore():
    previous = torch.get_num_threads()
    yield
    threads.settings.num_threads = None
    torch.set_num_threads(previous)


def test_small_work_runs_on_one_thread_and_restores():
    torch.set_num_threads(2)
    with threads.thread_limit(11) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_wide_work_uses_cores_but_never_more_than_the_default(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    torch.set_num_threads(2)
    assert threads.threads_for(2000) == 2          # PyTorch's own (OMP_NUM_THREADS) default is the cap
    torch.set_num_threads(8)
    assert threads.threads_for(None) == 3          # ... and so are the cores of the allocation


def test_nested_blocks_see_the_outer_default(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    torch.set_num_threads(2)
    with threads.thread_limit(10):
        with threads.thread_limit(None) as wide:
            assert wide == 2                        # not capped by the enclosing small block
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_override_and_validation():
    threads.settings.num_threads = 3
    assert threads.threads_for(5) == 3 and threads.threads_for(None) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ExprflowInputError, match="num_threads"):
            threads.settings.num_threads = bad
    threads.settings.num_threads = None
    assert threads.threads_for(5) == 1


def test_restored_after_an_exception():
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError):
        with threads.thread_limit(4):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


class _Record(L.Callback):
    def __init__(self):
        self.seen = set()

    def on_train_batch_start(self, *args):
        self.seen.add(torch.get_num_threads())


def test_flow_training_on_a_small_state_uses_one_thread():
    torch.set_num_threads(2)
    backbone = BACKBONES.get("mlp")(dim=6, n_conditions=0, hidden=16, depth=1)
    plan = FlowTrainingPlan(backbone, RectifiedFlow(), lambda s: s, OptimConfig(warmup_steps=1), 0)
    X = sp.csr_matrix(np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32))
    record = _Record()
    fit_plan(plan, X, None, batch_size=16, max_epochs=None, max_steps=3, progress_bar=False, callbacks=[record])
    assert record.seen == {1}
    assert torch.get_num_threads() == 2


def test_cli_threads_option_sets_the_setting():
    from exprflow.cli import cli

    result = CliRunner().invoke(cli, ["--threads", "2", "evaluate", "--help"])
    assert result.exit_code == 0 and threads.settings.num_threads == 2
    result = CliRunner().invoke(cli, ["--threads", "0", "evaluate", "--help"])
    assert result.exit_code == 2


def test_top_level_help_does_not_import_torch():
    code = "import sys; from exprflow.cli import cli\n" \
           "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False False")


class _Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.dim, self.n_conditions, self.seen = inner, inner.dim, inner.n_conditions, set()

    def forward(self, x, t, cond=None):
        self.seen.add(torch.get_num_threads())
        return self.inner(x, t, cond)


def test_sampling_many_cells_counts_as_wide_work(monkeypatch):
    from exprflow.models.base import WIDE_SAMPLING_CELLS, FlowModel

    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    torch.set_num_threads(2)
    model = FlowModel.__new__(FlowModel)
    model.plan, model.backbone = None, _Recorder(BACKBONES.get("mlp")(dim=6, n_conditions=0, hidden=8, depth=1))
    gen = torch.Generator().manual_seed(0)
    model.sample_states(None, 10, n_steps=1, solver="euler", guidance=1.0, generator=gen)
    assert model.backbone.seen == {1}  # a few cells of a small state: one thread
    model.backbone.seen.clear()
    model.sample_states(None, WIDE_SAMPLING_CELLS, n_steps=1, solver="euler", guidance=1.0, generator=gen)
    assert model.backbone.seen == {2}
    assert torch.get_num_threads() == 2
