"""Running a training plan with Lightning (progress bar, CSV log, devices, checkpoints, resume).

:func:`fit_loader` runs any ``LightningModule`` on any ``DataLoader`` (sequences of cells, DNA
windows, populations); :func:`fit_plan` is the common case of sparse cell rows densified per batch,
batched by a :class:`~exprflow.data.samplers.StepBatchSampler` (the batch of global step ``k`` is a
pure function of the seed and ``k``, and the processes of a DDP run see disjoint rows).

Multi-device / multi-node training is Lightning's: ``devices``, ``num_nodes`` and ``strategy="ddp"``
(gloo on CPU, NCCL on GPUs; launched by Lightning itself, by ``torchrun`` or by SLURM's ``srun``; see
docs/scaling.md). Checkpoints (``checkpoint_path``, ``checkpoint_every``) are written by rank 0 only,
atomically, and ``resume=True`` continues from one exactly (:mod:`exprflow.training.checkpoint`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence

import lightning as L
import numpy as np
import scipy.sparse as sp
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from exprflow.data.loaders import CellDataset
from exprflow.data.samplers import StepBatchSampler, step_loader
from exprflow.training.checkpoint import AtomicCheckpointIO, StepCheckpoint, read_checkpoint
from exprflow.runs.run_dir import record_phase
from exprflow.threads import thread_limit

logger = logging.getLogger(__name__)


def _total_steps(steps_per_epoch: int, max_epochs: int | None, max_steps: int | None) -> int:
    """Optimiser steps of the run: ``max_steps``, ``max_epochs`` epochs, or the smaller of the two."""
    if max_epochs is None and max_steps is None:
        raise ValueError("give max_epochs or max_steps")
    by_epochs = None if max_epochs is None else max_epochs * steps_per_epoch
    return min(s for s in (max_steps, by_epochs) if s is not None)


def fit_loader(
    plan: L.LightningModule,
    loader: DataLoader,
    *,
    max_epochs: int | None,
    max_steps: int | None,
    accelerator: str = "cpu",
    devices: int | str = 1,
    seed: int = 0,
    progress_bar: bool = True,
    log_dir: str | None = None,
    num_nodes: int = 1,
    strategy: str = "auto",
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> L.Trainer:
    """Fit ``plan`` on the batches of ``loader`` for ``max_epochs`` or ``max_steps`` (the smaller if both).

    Sets ``plan.total_steps`` (the learning-rate schedule's horizon) before training. Seed the loader's
    generator (and call ``lightning.seed_everything``) before building it for a reproducible run.
    The run uses :func:`exprflow.threads.threads_for` of the plan's ``work_width`` PyTorch threads
    (one for a small flow state, the available cores for wide work), restored afterwards.

    ``checkpoint_path``: file to checkpoint to, every ``checkpoint_every`` steps and at the end.
    ``resume``: continue from ``checkpoint_path`` if it exists (else start at step 0). A loader whose
    ``batch_sampler`` is a :class:`StepBatchSampler` resumes mid-epoch exactly and is sharded across
    processes by the sampler itself; other loaders get Lightning's ``DistributedSampler`` and restart
    an interrupted epoch from its beginning. Returns the Lightning ``Trainer``.
    """
    step_sampler = loader.batch_sampler if isinstance(loader.batch_sampler, StepBatchSampler) else None
    root = log_dir or tempfile.mkdtemp(prefix="exprflow_logs_")
    all_callbacks = list(callbacks)
    if checkpoint_path is not None:
        all_callbacks.append(StepCheckpoint(checkpoint_path, checkpoint_every, seed=seed))
    ckpt_path = None
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        read_checkpoint(checkpoint_path)  # a clear error now rather than a traceback inside Lightning
        ckpt_path = str(checkpoint_path)
    elif resume:
        logger.info("no checkpoint at %s: training from step 0", checkpoint_path)
    trainer = L.Trainer(
        max_epochs=max_epochs if max_epochs is not None else -1,
        max_steps=max_steps if max_steps is not None else -1,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger=CSVLogger(root, name="", version=""),
        callbacks=all_callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=step_sampler is None,
        gradient_clip_val=getattr(getattr(plan, "optim", None), "grad_clip", None),
        default_root_dir=root,
    )
    if step_sampler is not None:
        step_sampler.bind(trainer)
        steps_per_epoch = max(len(step_sampler), 1)
    else:
        steps_per_epoch = max(len(loader) // max(trainer.world_size, 1), 1)
    trainer.log_every_n_steps = max(1, min(50, steps_per_epoch))
    plan.total_steps = _total_steps(steps_per_epoch, max_epochs, max_steps)
    logger.info("training %d steps (%d per epoch, %d process(es))", plan.total_steps, steps_per_epoch,
                trainer.world_size)
    # Lightning's start-up banner (GPU/TPU availability, logger tips) is noise for CPU users.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        if step_sampler is not None:  # the step-indexed sampler does resume mid-epoch
            warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
        with thread_limit(getattr(plan, "work_width", None)):
            trainer.fit(plan, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    if not trainer.interrupted:
        record_phase(checkpoint_path)  # run.json of an ``exprflow fit`` run names the phases finished
    return trainer


def fit_plan(plan: L.LightningModule, X: sp.csr_matrix, conditions: np.ndarray | None, *, batch_size: int,
             max_epochs: int | None, max_steps: int | None, seed: int = 0, **trainer_options) -> L.Trainer:
    """Fit ``plan`` on the rows of ``X`` (densified per batch) for ``max_epochs`` or ``max_steps``.

    ``X`` is a CSR matrix, or rows that stay on disk (a ``BackedRows`` of an AnnData opened with
    ``backed="r"``), which are read in shuffled contiguous blocks (:mod:`exprflow.data.block_shuffle`).

    ``batch_size`` rows per process and step. ``trainer_options``: the other options of
    :func:`fit_loader` (``accelerator``, ``devices``, ``progress_bar``, checkpoints, ``callbacks``, ...).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    batch_size = min(batch_size, X.shape[0])
    if hasattr(X, "step_loader"):  # rows on disk (exprflow.data.backed.BackedRows): block-shuffled reads
        loader = X.step_loader(conditions, batch_size, seed=seed)
    else:
        dataset = CellDataset(X, conditions)
        loader = step_loader(dataset, batch_size, seed=seed, drop_last=True, collate_fn=dataset.collate)
    return fit_loader(plan, loader, max_epochs=max_epochs, max_steps=max_steps, seed=seed, **trainer_options)
