"""Lightning training plan for flow models: the objective, the optimiser and EMA weights.

The plan receives a backbone, an objective (anything with ``loss(model, x1, cond)``) and an encoder
that maps a batch of raw rows to the flow's state; it knows nothing about the concrete backbone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import lightning as L
import torch
from torch import Tensor, nn

from exprflow.flows import EMA

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.999
    grad_clip: float = 1.0


def adamw_warmup_cosine(params, optim: OptimConfig, total_steps: int) -> dict:
    """AdamW with linear warm-up then cosine decay, stepped per batch (Lightning's optimiser dict)."""
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    warmup, total, floor = optim.warmup_steps, max(int(total_steps), 1), optim.min_lr_ratio

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class FlowTrainingPlan(L.LightningModule):
    """Trains ``backbone`` with ``objective``; keeps an EMA copy used for sampling."""

    def __init__(
        self,
        backbone: nn.Module,
        objective,
        encode: Callable[[Tensor], Tensor],
        optim: OptimConfig,
        total_steps: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.objective = objective
        self.encode = encode
        self.optim = optim
        self.total_steps = max(int(total_steps), 1)
        self.ema = EMA(backbone, decay=optim.ema_decay)
        self.work_width = getattr(backbone, "dim", None)  # features per cell: picks the threads (exprflow.threads)
        self.history: list[tuple[int, float]] = []

    def compute_loss(self, batch: dict) -> tuple[Tensor, int]:
        """The batch's loss and its number of cells (subclasses change what the flow regresses on)."""
        x1 = self.encode(batch["x"])
        return self.objective.loss(self.backbone, x1, batch.get("cond")), x1.shape[0]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, n = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {self.global_step}; lower the learning rate"
            )
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        self.history.append((int(self.global_step), float(loss.detach())))
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        # The EMA follows each optimiser step here rather than in on_train_batch_end, because callbacks
        # (the step checkpoint) run their on_train_batch_end before the module's: a checkpoint taken
        # after step k then holds the EMA of step k.
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.backbone)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["exprflow_plan"] = {"ema": self.ema.state_dict(), "history": list(self.history)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["exprflow_plan"]
        self.ema.load_state_dict(state["ema"])
        self.history = [tuple(h) for h in state["history"]]

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.backbone.parameters(), self.optim, self.total_steps)
