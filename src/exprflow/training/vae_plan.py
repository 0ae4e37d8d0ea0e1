"""Lightning training plan for the count VAE: ELBO with a linearly warmed-up KL weight."""

from __future__ import annotations

import torch
from torch import Tensor

import lightning as L

from exprflow.training.plans import OptimConfig, adamw_warmup_cosine
from exprflow.representations.vae import CountVAE


class VAETrainingPlan(L.LightningModule):
    """Trains a :class:`CountVAE` on count rows; ``history`` keeps (step, loss, recon, kl)."""

    def __init__(self, module: CountVAE, optim: OptimConfig, total_steps: int = 1) -> None:
        super().__init__()
        self.module = module
        self.optim = optim
        self.total_steps = max(int(total_steps), 1)
        self.history: list[tuple[int, float, float, float]] = []

    def kl_weight(self) -> float:
        """``kl_weight * min(1, step / (kl_warmup_fraction * total_steps))``."""
        c = self.module.config
        warm = c.kl_warmup_fraction * self.total_steps
        ramp = 1.0 if warm <= 0 else min(1.0, self.global_step / warm)
        return c.kl_weight * ramp

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, parts = self.module.loss(batch["x"], self.kl_weight(), batch.get("cond"))  # cond: batch codes
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"VAE loss became {loss.item()} at step {self.global_step}; lower the learning rate"
            )
        self.log("vae_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch["x"].shape[0])
        self.history.append((int(self.global_step), float(loss.detach()), float(parts["recon"]), float(parts["kl"])))
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["exprflow_plan"] = {"history": list(self.history)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = [tuple(h) for h in checkpoint["exprflow_plan"]["history"]]

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.module.parameters(), self.optim, self.total_steps)
