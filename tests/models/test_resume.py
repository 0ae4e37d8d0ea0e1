"""Runs that are never lost: a run killed (``kill -9``) mid-training and resumed ends with exactly the
weights of an uninterrupted run with the same seed; run directories are never overwritten silently."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli
from exprflow.data import make_dataloader
from exprflow.data.samplers import StepBatchSampler
from exprflow.models import StateFlow
from exprflow.training.fit import fit_loader, fit_plan
from exprflow.training.plans import FlowTrainingPlan

TINY = {"hidden": 16, "depth": 1}

# Runs the CLI with every training step slowed down, so that the test can kill it mid-training.
SLOW_CLI = """
import sys, time
import torch
torch.set_num_threads(1)
from exprflow.training.plans import FlowTrainingPlan
from exprflow.training.vae_plan import VAETrainingPlan

delay, phase = float(sys.argv[1]), sys.argv[2]
plan = FlowTrainingPlan if phase == "flow" else VAETrainingPlan
step = plan.training_step
plan.training_step = lambda self, batch, i: (time.sleep(delay), step(self, batch, i))[1]
from exprflow.cli import cli
cli(args=sys.argv[3:], prog_name="exprflow")
"""


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model" / "weights.pt", weights_only=True)


def _assert_same_model(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert sorted(wa) == sorted(wb)
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ: {different[:5]}"
    ha = json.loads((a / "model" / "config.json").read_text())["history"]
    hb = json.loads((b / "model" / "config.json").read_text())["history"]
    assert ha == hb


def _kill_when(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.time() - start < timeout, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "train.h5ad"
    make_counts_adata(n_cells=160, n_genes=30, seed=4).write_h5ad(path)
    return path


# --------------------------------------------------------------------------- in-process
class _Crash(L.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


def _fit(counts_adata, ckpt: Path, *, crash_at=None, resume=False, **budget):
    torch.manual_seed(0)
    model = StateFlow(counts_adata, backbone_kwargs=TINY)
    plan = FlowTrainingPlan(model.backbone, model.objective, model.representation.encode, model.config.flow_optim, 0)
    callbacks = [] if crash_at is None else [_Crash(crash_at)]
    try:
        fit_plan(plan, model.data.X, model.data.conditions, batch_size=16, seed=3, progress_bar=False,
                 checkpoint_path=ckpt, checkpoint_every=10, resume=resume, callbacks=callbacks, **budget)
    except RuntimeError as exc:
        assert "simulated crash" in str(exc)
    weights = {**model.backbone.state_dict(), **{f"ema.{k}": v for k, v in plan.ema.shadow.items()}}
    return weights, plan.history


@pytest.mark.parametrize("budget", [{"max_steps": 37, "max_epochs": None}, {"max_steps": None, "max_epochs": 4}])
def test_crash_mid_epoch_then_resume_equals_uninterrupted(tmp_path, counts_adata, budget):
    """120 cells / 16 = 7 steps per epoch: the checkpoint at step 20 lies mid-epoch."""
    ref, ref_history = _fit(counts_adata, tmp_path / "ref.ckpt", **budget)
    _fit(counts_adata, tmp_path / "run.ckpt", crash_at=23, **budget)
    assert torch.load(tmp_path / "run.ckpt", weights_only=True)["global_step"] == 20
    resumed, history = _fit(counts_adata, tmp_path / "run.ckpt", resume=True, **budget)
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    assert history == ref_history and len(history) == (37 if budget["max_steps"] else 28)


def test_step_sampler_keeps_the_batch_order_of_the_shuffled_loader():
    """One process: the batches equal those Lightning drew from DataLoader(shuffle=True, seed) before."""

    class Record(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["index"].tolist())
            return (self.w * batch["x"].sum()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    X = torch.rand(50, 3).numpy()
    plan = Record()
    loader = make_dataloader(X, batch_size=8, shuffle=True, seed=11, drop_last=True)
    fit_loader(plan, loader, max_epochs=4, max_steps=None, progress_bar=False)
    sampler = StepBatchSampler(50, 8, seed=11)
    assert len(plan.seen) == 4 * 6
    assert plan.seen == [sampler.batch(k).tolist() for k in range(24)]


# --------------------------------------------------------------------------- the CLI, kill -9
@pytest.mark.slow  # a fresh Python process per run: ~10 s alone, 35 s on the loaded 2-core machine
def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path, data):
    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    args = ["fit", "--data", data, "--model", "state", "--max-steps", 40, "--batch-size", 16, "--seed", 5,
            "--backbone-kwargs", json.dumps(TINY), "--checkpoint-every", 10]
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), "0.1", "flow", *map(str, args), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _kill_when(run / "checkpoints" / "flow.ckpt", proc)
    assert proc.returncode == -signal.SIGKILL and not (run / "model").exists()
    killed_at = torch.load(run / "checkpoints" / "flow.ckpt", weights_only=True)["global_step"]
    assert 10 <= killed_at < 40

    r = _cli(*args, "--out", run)  # without --resume the run directory is refused
    assert r.exit_code == 2 and "--resume" in r.output
    r = _cli(*args, "--out", run, "--resume")
    assert r.exit_code == 0, r.output
    r = _cli(*args, "--out", tmp_path / "ref")
    assert r.exit_code == 0, r.output
    _assert_same_model(run, tmp_path / "ref")


@pytest.mark.slow
def test_latent_flow_killed_in_the_vae_phase_resumes_both_phases(tmp_path, data):
    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    args = ["fit", "--data", data, "--model", "latent", "--max-steps", 30, "--flow-steps", 20, "--batch-size", 16,
            "--backbone-kwargs", json.dumps(TINY), "--model-kwargs", '{"vae": {"n_hidden": 16, "n_latent": 3}}',
            "--checkpoint-every", 10]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), "0.1", "vae", *map(str, args), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _kill_when(run / "checkpoints" / "vae.ckpt", proc)
    assert not (run / "checkpoints" / "flow.ckpt").exists()
    r = _cli(*args, "--out", run, "--resume")
    assert r.exit_code == 0, r.output
    r = _cli(*args, "--out", tmp_path / "ref")
    assert r.exit_code == 0, r.output
    _assert_same_model(run, tmp_path / "ref")
    # killed in (here: after) the flow phase: the finished VAE phase is restored, not retrained
    (run / "model").rename(tmp_path / "first_model")
    r = _cli(*args, "--out", run, "--resume")
    assert r.exit_code == 0, r.output
    _assert_same_model(run, tmp_path / "ref")


# --------------------------------------------------------------------------- run directories
def test_run_directory_rules(tmp_path, data):
    args = ["fit", "--data", data, "--model", "state", "--max-steps", 3, "--batch-size", 16,
            "--backbone-kwargs", json.dumps(TINY)]
    run = tmp_path / "run"
    r = _cli(*args, "--out", run, "--resume")
    assert r.exit_code == 2 and "Nothing to resume" in r.output
    assert _cli(*args, "--out", run).exit_code == 0
    assert json.loads((run / "run.json").read_text())["train"]["max_steps"] == 3
    r = _cli(*args, "--out", run)
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    r = _cli(*args, "--out", run, "--resume")
    assert r.exit_code == 2 and "finished already" in r.output
    r = _cli(*args, "--out", run, "--resume", "--overwrite")
    assert r.exit_code == 2 and "only one" in r.output

    (tmp_path / "old_model").mkdir()
    (run / "model").rename(tmp_path / "old_model" / "model")  # an unfinished run
    r = _cli(*args, "--seed", 1, "--out", run, "--resume")
    assert r.exit_code == 2 and "seed" in r.output and "differ" in r.output
    ckpt = run / "checkpoints" / "flow.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # partial file
    r = _cli(*args, "--out", run, "--resume")
    assert r.exit_code == 2 and str(ckpt) in r.output and "corrupted" in r.output and "Traceback" not in r.output

    r = _cli(*args, "--out", run, "--overwrite")  # replacing a run removes its old checkpoints first
    assert r.exit_code == 0, r.output
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
