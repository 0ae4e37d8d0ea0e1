"""Multi-process training: the step-indexed sampler shards every global batch across ranks, and
``exprflow fit --devices 2 --strategy ddp`` (2 CPU processes, gloo) trains on disjoint data with
synchronised weights and writes the run once, from rank 0."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from synthetic import make_counts_adata

from exprflow.data.samplers import StepBatchSampler
from exprflow.errors import ExprflowInputError


def test_ranks_get_disjoint_slices_of_each_global_batch():
    sampler = StepBatchSampler(103, 8, seed=2)
    for step in (0, 5, 6, 17):  # 103 // 16 = 6 steps per epoch with 2 processes
        r0, r1 = sampler.batch(step, 0, 2), sampler.batch(step, 1, 2)
        assert len(r0) == len(r1) == 8 and not set(r0) & set(r1)
    epoch = np.concatenate([sampler.batch(k, r, 2) for k in range(6) for r in range(2)])
    assert len(np.unique(epoch)) == 96  # one epoch visits distinct rows
    # one process with batch 16 sees exactly the union, in rank order
    assert np.array_equal(np.concatenate([sampler.batch(4, 0, 2), sampler.batch(4, 1, 2)]),
                          StepBatchSampler(103, 16, seed=2).batch(4))


def test_batches_are_a_pure_function_of_the_step():
    a, b = StepBatchSampler(40, 7, seed=1), StepBatchSampler(40, 7, seed=1)
    forward = [a.batch(k).tolist() for k in range(20)]
    backward = [b.batch(k).tolist() for k in reversed(range(20))][::-1]
    assert forward == backward  # the epoch cache changes nothing
    b.start_step = 13  # 5 steps per epoch: iteration resumes at position 3 of epoch 2
    assert list(b) == forward[13:15] and len(b) == 5
    assert StepBatchSampler(40, 7, seed=2).batch(0).tolist() != forward[0]


def test_too_large_global_batch_is_a_clear_error():
    with pytest.raises(ExprflowInputError, match="Lower batch_size or the number of devices"):
        StepBatchSampler(10, 8).steps_per_epoch(world_size=2)


def test_uneven_last_batch_is_padded_for_every_rank():
    sampler = StepBatchSampler(10, 3, seed=0, drop_last=False)
    assert sampler.steps_per_epoch(2) == 2
    last = [sampler.batch(1, r, 2) for r in range(2)]
    assert all(len(rows) == 3 for rows in last)


# Records the rows each rank trains on and every model save, then runs the CLI (Lightning relaunches
# this same script for rank 1).
RECORDING_CLI = """
import json, os, sys
import torch
torch.set_num_threads(1)
import exprflow.models.base as base
from exprflow.training.plans import FlowTrainingPlan

log = sys.argv[1]
step, save = FlowTrainingPlan.training_step, base.save_model_dir

def recording_step(self, batch, i):
    with open(os.path.join(log, f"rank{self.global_rank}.jsonl"), "a") as fh:
        fh.write(json.dumps([int(self.global_step), batch["index"].tolist()]) + "\\n")
    return step(self, batch, i)

def recording_save(path, *args, **kwargs):
    with open(os.path.join(log, "saves.txt"), "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return save(path, *args, **kwargs)

def final_weights(self):
    torch.save({k: v.clone() for k, v in self.backbone.state_dict().items()},
               os.path.join(log, f"final{self.global_rank}.pt"))

FlowTrainingPlan.training_step = recording_step
FlowTrainingPlan.on_train_end = final_weights
base.save_model_dir = recording_save
from exprflow.cli import cli
cli(args=sys.argv[2:], prog_name="exprflow")  # sys.argv stays: Lightning relaunches it for rank 1
"""


@pytest.mark.slow  # two fresh Python processes + gloo: ~15 s alone, 75 s on the loaded shared machine
def test_ddp_two_cpu_processes_see_disjoint_data_and_save_once(tmp_path):
    data, log, run = tmp_path / "train.h5ad", tmp_path / "log", tmp_path / "run"
    make_counts_adata(n_cells=160, n_genes=30, seed=4).write_h5ad(data)
    log.mkdir()
    script = tmp_path / "recording_cli.py"
    script.write_text(RECORDING_CLI)
    cmd = [sys.executable, str(script), str(log), "fit", "--data", str(data), "--model", "state",
           "--max-steps", "8", "--batch-size", "16", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
           "--backbone-kwargs", '{"hidden": 16, "depth": 1}', "--checkpoint-every", "4", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_PROCID"):
        env.pop(var, None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    seen = {}
    for rank in (0, 1):
        lines = [json.loads(line) for line in (log / f"rank{rank}.jsonl").read_text().splitlines()]
        assert [s for s, _ in lines] == list(range(8))
        seen[rank] = dict(lines)
    sampler = StepBatchSampler(160, 16, seed=0)  # the CLI's default seed
    for step in range(8):
        assert not set(seen[0][step]) & set(seen[1][step])
        assert seen[0][step] == sampler.batch(step, 0, 2).tolist()
        assert seen[1][step] == sampler.batch(step, 1, 2).tolist()
    assert len({i for r in (0, 1) for s in range(5) for i in seen[r][s]}) == 160  # epoch 0 covers every cell

    w0, w1 = (torch.load(log / f"final{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # gradients were averaged across the ranks
    assert len((log / "saves.txt").read_text().split()) == 1  # saved once, by rank 0
    saved = torch.load(run / "model" / "weights.pt", weights_only=True)
    assert all(torch.equal(saved[f"backbone.{k}"], w0[k]) for k in w0)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "loss.png", "model", "run.json"]
    ckpt = torch.load(run / "checkpoints" / "flow.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8 and len(ckpt["callbacks"]["StepCheckpoint"]["rng"]) == 2
    rng = ckpt["callbacks"]["StepCheckpoint"]["rng"]
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each rank draws its own noise


def test_every_model_takes_the_trainer_options():
    from exprflow.commands.options import build_run_kwargs
    from exprflow.models import MODELS
    from exprflow.models.base import FlowModel
    from exprflow.registry import keyword_parameters
    from exprflow.training.options import TRAINER_OPTIONS

    assert set(TRAINER_OPTIONS) <= keyword_parameters(FlowModel.train)
    assert all(issubclass(MODELS.get(name), FlowModel) for name in MODELS.names())  # one train() for all
    kwargs = build_run_kwargs(accelerator="cpu", devices=2, num_nodes=1, strategy="ddp", checkpoint_dir="c",
                              checkpoint_every=None, resume=False)
    assert kwargs["devices"] == 2 and kwargs["strategy"] == "ddp" and kwargs["checkpoint_every"] == 1000


# Every training step sleeps, so that the test can kill the whole run mid-training.
SLOW_CLI = """
import sys, time
import torch
torch.set_num_threads(1)
from exprflow.training.plans import FlowTrainingPlan

delay = float(sys.argv[1])
step = FlowTrainingPlan.training_step
FlowTrainingPlan.training_step = lambda self, batch, i: (time.sleep(delay), step(self, batch, i))[1]
from exprflow.cli import cli
cli(args=sys.argv[2:], prog_name="exprflow")
"""


@pytest.mark.slow  # three 2-process runs: ~1 min alone, several on the loaded shared machine
def test_ddp_run_killed_and_resumed_equals_uninterrupted(tmp_path):
    import signal
    import time

    data, script = tmp_path / "train.h5ad", tmp_path / "slow_cli.py"
    make_counts_adata(n_cells=160, n_genes=30, seed=4).write_h5ad(data)
    script.write_text(SLOW_CLI)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    args = ["fit", "--data", str(data), "--model", "state", "--max-steps", "24", "--batch-size", "16",
            "--devices", "2", "--strategy", "ddp", "--backbone-kwargs", '{"hidden": 16, "depth": 1}',
            "--checkpoint-every", "4", "--seed", "3"]

    def cli(delay, out, *extra, **kw):
        return subprocess.Popen([sys.executable, str(script), str(delay), *args, "--out", str(out), *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True, **kw)

    run = tmp_path / "run"
    proc = cli(0.3, run)
    ckpt = run / "checkpoints" / "flow.ckpt"
    start = time.time()
    while not ckpt.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - start < 600
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # both ranks, as a scheduler would
    proc.wait()
    assert not (run / "model").exists()
    assert torch.load(ckpt, weights_only=True)["global_step"] < 24
    for out, extra in ((run, ["--resume"]), (tmp_path / "ref", [])):
        p = cli(0, out, *extra)
        assert p.wait(timeout=600) == 0, p.communicate()[1][-3000:]
    a = torch.load(run / "model" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "ref" / "model" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
