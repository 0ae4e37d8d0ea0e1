"""Running a training plan with Lightning (progress bar, CSV log, devices) on sparse rows."""

from __future__ import annotations

import logging
import tempfile
import warnings

import lightning as L
import numpy as np
import scipy.sparse as sp
from lightning.pytorch.loggers import CSVLogger

from exprflow.data import make_dataloader

logger = logging.getLogger(__name__)


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
        gradient_clip_val=getattr(plan.optim, "grad_clip", None),
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        default_root_dir=root,
    )
    logger.info("training %d steps (%d per epoch, batch %d)", total, steps_per_epoch, batch_size)
    # Lightning's start-up banner (GPU/TPU availability, logger tips) is noise for CPU users.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(plan, train_dataloaders=loader)
