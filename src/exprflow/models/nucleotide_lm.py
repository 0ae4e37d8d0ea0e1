"""``NucleotideLM``: an autoregressive language model of DNA with a Hyena or Transformer backbone.

::

    lm = NucleotideLM(backbone="hyena", context=1024, width=64, depth=2)
    lm.train(split.train_segments(tokens), max_steps=1000, seed=0)
    lm.bits_per_nucleotide(split.held_out(tokens), prefix=split.prefix(tokens))   # {"bits_per_nt": ...}
    lm.sample(4, 500, temperature=1.0, seed=0)                                     # -> list of str
    lm.save("run/"); NucleotideLM.load("run/")

**Scoring** (:meth:`NucleotideLM.bits_per_nucleotide`): strided windows of ``context`` nucleotides. The
targets are cut into blocks of ``stride`` consecutive positions; the block ending at target ``t`` is
read from the window whose last input token is ``t - 1``. So every scored nucleotide sees between
``context - stride + 1`` and ``context`` previous nucleotides (``stride = context // 2`` by default),
except, when no ``prefix`` is given, the first ones of the sequence, which see all there is. The
nucleotides before the scored region (``prefix``) are used as context only. Targets that are N are
skipped. The network always runs at its training length ``context`` (shorter windows are right-padded;
a causal network cannot see the padding), because Hyena's implicit filters are functions of ``lag / L``.

**Sampling** (:meth:`NucleotideLM.sample`): one nucleotide at a time from the softmax of the logits
divided by ``temperature`` (0: greedy), each step reading the last ``context`` nucleotides (one full
forward pass per nucleotide; no cache).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from exprflow import __version__
from exprflow.backbones.nucleotide import LM_BACKBONES, CausalNucleotideNet, count_parameters
from exprflow.errors import ExprflowInputError
from exprflow.persistence.model_dir import config_from_dict
from exprflow.training.fit import fit_loader
from exprflow.training.nucleotide import LOG2, NucleotideLMPlan, WindowDataset
from exprflow.persistence.model_dir import save_model_dir
from exprflow.persistence.restore import load_backbone_weights
from exprflow.training.seeding import seeded_training
from exprflow.training.plans import OptimConfig
from exprflow.representations.dna import N_TOKEN, NucleotideTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NucleotideLMConfig:
    """Network, window and optimiser settings of a :class:`NucleotideLM`."""

    backbone: str = "hyena"  # "hyena" | "transformer" (LM_BACKBONES)
    context: int = 1024  # window length in nucleotides (training and scoring)
    width: int = 64
    depth: int = 2
    mlp_ratio: float = 2.0
    mixer_kwargs: dict = field(default_factory=dict)
    batch_size: int = 8
    optim: OptimConfig = OptimConfig(lr=2e-3, weight_decay=0.01, warmup_steps=50)


def _score_plan(n: int, first: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """``(window_start, first_target, last_target)`` for targets ``first..n-1`` of a sequence of ``n``."""
    plan = []
    for t0 in range(first, n, stride):
        t1 = min(t0 + stride, n) - 1
        plan.append((max(t1 - context, 0), t0, t1))
    return plan


class NucleotideLM:
    """Causal nucleotide language model (see the module docstring)."""

    def __init__(self, config: NucleotideLMConfig | None = None, **overrides) -> None:
        config = config or NucleotideLMConfig()
        if "lr" in overrides:
            overrides["optim"] = replace(config.optim, lr=overrides.pop("lr"))
        unknown = set(overrides) - set(NucleotideLMConfig.__dataclass_fields__)
        if unknown:
            raise ExprflowInputError(f"unknown NucleotideLM options {sorted(unknown)}; known: "
                                     f"{sorted(NucleotideLMConfig.__dataclass_fields__)}.")
        self.config = replace(config, **overrides)
        LM_BACKBONES.get(self.config.backbone)  # clear error for an unknown backbone
        if self.config.context < 2:
            raise ExprflowInputError(f"context must be at least 2 nucleotides, got {self.config.context}.")
        c = self.config
        self.net = CausalNucleotideNet(c.backbone, c.width, c.depth, c.mlp_ratio, c.mixer_kwargs)
        self.history: list[tuple[int, float]] = []
        self.eval_history: list[tuple[int, float]] = []
        self.train_seconds: float | None = None
        self.info: dict = {}  # provenance (FASTA, record, split), saved in config.json
        self.base_composition = [0.25] * 4  # A, C, G, T frequencies of the training region

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.net)

    # ------------------------------------------------------------------ training
    @seeded_training
    def train(self, segments: list[np.ndarray], max_steps: int = 1000, seed: int = 0,
              eval_tokens: np.ndarray | None = None, eval_prefix: np.ndarray | None = None,
              eval_every: int | None = None, accelerator: str = "cpu", progress_bar: bool = True) -> "NucleotideLM":
        """Train on ``max_steps`` batches of random windows of ``segments`` (the training region).

        With ``eval_tokens`` and ``eval_every``, bits per nucleotide on ``eval_tokens`` are recorded
        every ``eval_every`` steps in :attr:`eval_history` (a held-out learning curve). ``seed``
        initialises the network and draws the windows; the caller's random generators are left as they
        were (:mod:`exprflow.training.seeding`).
        """
        if max_steps < 1:
            raise ExprflowInputError(f"max_steps must be >= 1, got {max_steps}.")
        c = self.config
        counts = sum(np.bincount(np.asarray(s, dtype=np.int64), minlength=5)[:4] for s in segments)
        self.base_composition = (counts / max(counts.sum(), 1)).tolist()
        L.seed_everything(seed, workers=True, verbose=False)
        self.net = CausalNucleotideNet(c.backbone, c.width, c.depth, c.mlp_ratio, c.mixer_kwargs)
        data = WindowDataset(segments, c.context, max_steps * c.batch_size, seed=seed)
        loader = DataLoader(data, batch_size=c.batch_size, shuffle=False, drop_last=True)
        evaluate = None
        if eval_tokens is not None and eval_every:
            def evaluate(_net):
                return self.bits_per_nucleotide(eval_tokens, prefix=eval_prefix)["bits_per_nt"]
        plan = NucleotideLMPlan(self.net, c.optim, max_steps, evaluate=evaluate, eval_every=eval_every)
        start = time.perf_counter()
        fit_loader(plan, loader, max_epochs=None, max_steps=max_steps, accelerator=accelerator, seed=seed,
                   progress_bar=progress_bar)
        self.train_seconds = time.perf_counter() - start
        self.net = plan.net.cpu().eval()
        self.history, self.eval_history = plan.history, plan.eval_history
        return self

    # ------------------------------------------------------------------- scoring
    @torch.no_grad()
    def bits_per_nucleotide(self, tokens, prefix=None, context: int | None = None, stride: int | None = None,
                            batch_size: int = 16) -> dict:
        """Bits per nucleotide of ``tokens`` in strided windows (see the module docstring).

        ``prefix``: the nucleotides before ``tokens`` (context only, never scored). ``context``: window
        length (default: the training context). ``stride``: scored positions per window (default
        ``context // 2``); each scored nucleotide sees at least ``context - stride + 1`` previous ones.
        """
        context = int(context or self.config.context)
        stride = int(stride or max(context // 2, 1))
        if not 1 <= stride <= context:
            raise ExprflowInputError(f"stride must lie in 1..context ({context}), got {stride}.")
        tokens = np.asarray(tokens, dtype=np.int64)
        head = np.asarray([] if prefix is None else prefix, dtype=np.int64)[-(context - stride + 1):]
        full = torch.from_numpy(np.concatenate([head, tokens]))
        first = max(head.shape[0], 1)  # target 0 of a sequence without prefix has no context
        plan = _score_plan(full.shape[0], first, context, stride)
        was_training = self.net.training
        self.net.eval()
        total, n_scored, min_seen = 0.0, 0, context
        for b in range(0, len(plan), batch_size):
            part = plan[b:b + batch_size]
            windows = torch.full((len(part), context), N_TOKEN, dtype=torch.long)
            for row, (s, _, t1) in enumerate(part):
                windows[row, :t1 - s] = full[s:t1]
            log_p = torch.log_softmax(self.net(windows).float(), dim=-1)  # (b, context, 4)
            for row, (s, t0, t1) in enumerate(part):
                target = full[t0:t1 + 1]
                keep = target != N_TOKEN
                lp = log_p[row, t0 - 1 - s:t1 - s].gather(-1, target.clamp(max=3)[:, None])[:, 0]
                total -= float(lp[keep].sum())
                n_scored += int(keep.sum())
                min_seen = min(min_seen, t0 - s)
        self.net.train(was_training)
        if n_scored == 0:
            raise ExprflowInputError("no nucleotide could be scored: the sequence is empty or all N.")
        return {"bits_per_nt": total / LOG2 / n_scored, "n_scored": n_scored,
                "n_skipped": int(tokens.shape[0] - n_scored), "context": context, "stride": stride,
                "min_context": int(min_seen), "max_context": context}

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, length: int, prompt: str | None = None, temperature: float = 1.0,
               seed: int = 0) -> list[str]:
        """``n`` sequences of ``length`` new nucleotides (after ``prompt``, which is not returned)."""
        if n < 1 or length < 1:
            raise ExprflowInputError(f"n and length must be >= 1, got n={n}, length={length}.")
        if temperature < 0:
            raise ExprflowInputError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        tokenizer = NucleotideTokenizer()
        start = torch.from_numpy(tokenizer.encode(prompt or "").astype(np.int64))
        C = self.config.context
        seq = torch.full((n, start.shape[0] + length), N_TOKEN, dtype=torch.long)
        seq[:, :start.shape[0]] = start
        gen = torch.Generator().manual_seed(int(seed))
        self.net.eval()
        for m in range(start.shape[0], seq.shape[1]):
            lo = max(m - C, 0)
            window = torch.full((n, C), N_TOKEN, dtype=torch.long)
            window[:, :m - lo] = seq[:, lo:m]
            if m == 0:  # no prompt: the first nucleotide from the training region's base composition
                logits = torch.log(torch.as_tensor(self.base_composition, dtype=torch.float64)).expand(n, -1)
            else:
                logits = self.net(window)[:, m - lo - 1]
            if temperature == 0:
                seq[:, m] = logits.argmax(-1)
            else:
                probs = torch.softmax(logits.double() / temperature, dim=-1)
                seq[:, m] = torch.multinomial(probs, 1, generator=gen)[:, 0]
        return [tokenizer.decode(row[start.shape[0]:].numpy()) for row in seq]

    # --------------------------------------------------------------- persistence
    def save(self, dir_path: str, overwrite: bool = False) -> None:
        """Save as a directory with ``config.json`` and ``weights.pt`` (atomically)."""
        config = {
            "model": type(self).__name__, "exprflow_version": __version__, "torch_version": torch.__version__,
            "config": asdict(self.config), "parameters": self.n_parameters, "train_seconds": self.train_seconds,
            "history": self.history, "eval_history": self.eval_history, "info": self.info,
            "base_composition": self.base_composition,
        }
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        save_model_dir(dir_path, config, tensors, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str) -> "NucleotideLM":
        """Load a model saved by :meth:`save`."""
        from exprflow.persistence.restore import read_saved

        saved, tensors = read_saved(cls, dir_path)
        self = cls(config_from_dict(NucleotideLMConfig, saved["config"]))
        load_backbone_weights(self.net, tensors, "net")
        self.net.eval()
        self.history = [tuple(h) for h in saved.get("history", [])]
        self.eval_history = [tuple(h) for h in saved.get("eval_history", [])]
        self.train_seconds = saved.get("train_seconds")
        self.info = saved.get("info", {})
        self.base_composition = saved.get("base_composition", [0.25] * 4)
        return self
