"""Training a causal nucleotide language model: random windows of the training region and a Lightning plan.

A training example is a window of ``context + 1`` nucleotides drawn uniformly from the training
segments (never across two segments, never into the held-out region); the network reads the first
``context`` and is scored on the next nucleotide at every position (teacher forcing). The loss is the
cross-entropy in bits over A, C, G, T; N targets are ignored.
"""

from __future__ import annotations

import math
from typing import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from exprflow.errors import ExprflowInputError
from exprflow.training.plans import OptimConfig, adamw_warmup_cosine
from exprflow.representations.dna import N_TOKEN

LOG2 = math.log(2.0)


class WindowDataset(Dataset):
    """``n_windows`` windows of ``context + 1`` tokens at seeded random offsets of the segments."""

    def __init__(self, segments: list[np.ndarray], context: int, n_windows: int, seed: int = 0) -> None:
        self.segments = [np.asarray(s, dtype=np.int64) for s in segments]
        starts = np.array([max(len(s) - context, 0) for s in self.segments])  # valid offsets per segment
        if starts.sum() == 0:
            longest = max((len(s) for s in self.segments), default=0)
            raise ExprflowInputError(
                f"the training region (longest segment {longest:,} nt) is shorter than one window of "
                f"{context + 1:,} nucleotides; use a smaller --context or a longer sequence."
            )
        rng = np.random.default_rng(seed)
        self.which = rng.choice(len(starts), size=n_windows, p=starts / starts.sum())
        self.offset = (rng.random(n_windows) * starts[self.which]).astype(np.int64)
        self.context = context

    def __len__(self) -> int:
        return len(self.which)

    def __getitem__(self, i: int) -> Tensor:
        seg, o = self.segments[self.which[i]], self.offset[i]
        return torch.from_numpy(seg[o:o + self.context + 1])


def next_token_bits(net: nn.Module, windows: Tensor) -> Tensor:
    """Mean cross-entropy in bits of predicting ``windows[:, 1:]`` from ``windows[:, :-1]`` (N ignored)."""
    logits = net(windows[:, :-1])  # (B, L, 4)
    target = windows[:, 1:].long()
    target = torch.where(target == N_TOKEN, torch.full_like(target, -100), target)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100) / LOG2


class NucleotideLMPlan(L.LightningModule):
    """Trains ``net`` on next-nucleotide cross-entropy; ``evaluate(net) -> bits`` runs every ``eval_every``
    steps when given (a held-out learning curve)."""

    def __init__(self, net: nn.Module, optim: OptimConfig, total_steps: int,
                 evaluate: Callable[[nn.Module], float] | None = None, eval_every: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.optim = optim
        self.total_steps = max(int(total_steps), 1)
        self.evaluate, self.eval_every = evaluate, eval_every
        self.history: list[tuple[int, float]] = []
        self.eval_history: list[tuple[int, float]] = []

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = next_token_bits(self.net, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.global_step}; "
                                     "lower the learning rate")
        self.log("train_bits", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch.shape[0])
        self.history.append((int(self.global_step), float(loss.detach())))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        step = int(self.global_step)
        if self.evaluate is not None and self.eval_every and (step % self.eval_every == 0 or step == self.total_steps):
            self.eval_history.append((step, float(self.evaluate(self.net))))
            self.net.train()

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.net.parameters(), self.optim, self.total_steps)
