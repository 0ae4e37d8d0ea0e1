"""Running a training plan with Lightning (progress bar, CSV log, devices).

:func:`fit_loader` runs any ``LightningModule`` on any ``DataLoader`` (sequences of cells, DNA
windows, populations); :func:`fit_plan` is the common case of sparse cell rows densified per batch.
"""

from __future__ import annotations

import logging
import tempfile
import warnings

import lightning as L
import numpy as np
import scipy.sparse as sp
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from exprflow.data import make_dataloader

logger = logging.getLogger(__name__)


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
) -> None:
    """Fit ``plan`` on the batches of ``loader`` for ``max_epochs`` or ``max_steps`` (the smaller if both).

    Sets ``plan.total_steps`` (the learning-rate schedule's horizon) before training. Seed the loader's
    generator (and call ``lightning.seed_everything``) before building it for a reproducible run.
    """
    if max_epochs is None and max_steps is None:
        raise ValueError("give max_epochs or max_steps")
    steps_per_epoch = max(len(loader), 1)
    total = max_steps if max_steps is not None else max_epochs * steps_per_epoch
    if max_epochs is not None and max_steps is not None:
        total = min(max_steps, max_epochs * steps_per_epoch)
    plan.total_steps = total
    root = log_dir or tempfile.mkdtemp(prefix="exprflow_logs_")
    trainer = L.Trainer(
        max_epochs=max_epochs if max_epochs is not None else -1,
        max_steps=total,
        accelerator=accelerator,
        devices=devices,
        logger=CSVLogger(root, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        gradient_clip_val=getattr(getattr(plan, "optim", None), "grad_clip", None),
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        default_root_dir=root,
    )
    logger.info("training %d steps (%d per epoch)", total, steps_per_epoch)
    # Lightning's start-up banner (GPU/TPU availability, logger tips) is noise for CPU users.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(plan, train_dataloaders=loader)


def fit_plan(
    plan: L.LightningModule,
    X: sp.csr_matrix,
    conditions: np.ndarray | None,
    *,
    batch_size: int,
    max_epochs: int | None,
    max_steps: int | None,
    accelerator: str = "cpu",
    devices: int | str = 1,
    seed: int = 0,
    progress_bar: bool = True,
    log_dir: str | None = None,
) -> None:
    """Fit ``plan`` on the rows of ``X`` (densified per batch) for ``max_epochs`` or ``max_steps``."""
    L.seed_everything(seed, workers=True, verbose=False)
    batch_size = min(batch_size, X.shape[0])
    loader = make_dataloader(X, conditions, batch_size=batch_size, shuffle=True, seed=seed, drop_last=True)
    fit_loader(plan, loader, max_epochs=max_epochs, max_steps=max_steps, accelerator=accelerator,
               devices=devices, seed=seed, progress_bar=progress_bar, log_dir=log_dir)
