"""How a model is trained: one options type for the trainer, one budget per training phase.

Every model trains in one or two phases, each with its own named budget:

- ``"vae"``: the representation (the count VAE of ``LatentFlow``, ``PerturbationFlow``,
  ``PopulationFlow``, ``TrajectoryFlow`` on counts), set by ``vae_steps``;
- ``"flow"``: the rectified flow on the representation's states, set by ``flow_steps``.

``max_steps`` / ``max_epochs`` have one meaning in every model: the budget of every phase not given its
own (so an scvi-tools style ``train(max_epochs=10)`` is short in every phase). A phase given neither
takes its model's default. ``batch_size`` is the cells per step of the first phase (the VAE's, or the
flow's in a model without a VAE phase); ``flow_batch_size`` the flow's in a two-phase model.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields

from exprflow.errors import ExprflowInputError


@dataclass(frozen=True)
class TrainerOptions:
    """How Lightning runs a phase: devices, processes, random seed, progress, logs and checkpoints.

    Parameters
    ----------
    accelerator, devices, num_nodes, strategy
        Lightning's (``strategy="ddp"`` for several processes; docs/scaling.md).
    seed
        Initialises the networks of a model not trained yet and draws the batches.
    progress_bar, log_dir
        Lightning's progress bar; where the CSV loss log goes (default: a temporary directory).
    checkpoint_dir, checkpoint_every, resume
        Each phase checkpoints to ``checkpoint_dir/{phase}.ckpt`` every ``checkpoint_every`` steps and at
        its end; ``resume=True`` continues an interrupted phase exactly and skips a finished one.
    """

    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    seed: int = 0
    progress_bar: bool = True
    log_dir: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False

    def checkpoint_path(self, phase: str) -> str | None:
        """The phase's checkpoint file, or None without ``checkpoint_dir``."""
        return None if self.checkpoint_dir is None else f"{self.checkpoint_dir}/{phase}.ckpt"

    def fit_kwargs(self, phase: str) -> dict:
        """Keyword arguments of :func:`~exprflow.training.fit.fit_plan` / ``fit_loader`` for ``phase``."""
        kwargs = {k: v for k, v in asdict(self).items() if k != "checkpoint_dir"}
        kwargs["checkpoint_path"] = self.checkpoint_path(phase)
        return kwargs


#: the keyword arguments of ``train`` that make a :class:`TrainerOptions`
TRAINER_OPTIONS = tuple(f.name for f in fields(TrainerOptions))


@dataclass(frozen=True)
class PhaseBudget:
    """Optimiser steps (or epochs; the smaller when both) and cells per step of one training phase."""

    max_steps: int | None
    max_epochs: int | None
    batch_size: int

    def describe(self) -> str:
        parts = [f"{self.max_steps} steps" if self.max_steps is not None else None,
                 f"{self.max_epochs} epochs" if self.max_epochs is not None else None]
        return " or ".join(p for p in parts if p) + f" of {self.batch_size}"


def _positive(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise ExprflowInputError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def resolve_budgets(phases: tuple[str, ...], *, max_epochs, max_steps, batch_size, flow_batch_size,
                    vae_steps, flow_steps, defaults: dict, model: str) -> dict[str, PhaseBudget]:
    """Each phase's :class:`PhaseBudget` from ``train``'s arguments (see the module docstring).

    ``defaults``: ``{"vae_steps": callable(batch_size) -> int, "flow_steps": int, "batch_size": int,
    "flow_batch_size": int}`` of the model (the VAE's default depends on its batch size).
    """
    max_epochs, max_steps = _positive("max_epochs", max_epochs), _positive("max_steps", max_steps)
    named = {"vae": _positive("vae_steps", vae_steps), "flow": _positive("flow_steps", flow_steps)}
    if "vae" not in phases and named["vae"] is not None:
        raise ExprflowInputError(f"{model} has no VAE phase: vae_steps does not apply (use flow_steps or max_steps).")
    for name, value in (("batch_size", batch_size), ("flow_batch_size", flow_batch_size)):
        if value is not None and (_positive(name, value) or 0) < 1:
            raise ExprflowInputError(f"{name} must be a positive integer, got {value!r}.")
    general = max_epochs is not None or max_steps is not None
    if general and len(phases) > 1 and None in (named[p] for p in phases):
        warnings.warn(f"{model}.train: max_steps / max_epochs set the budget of every phase not given by name "
                      "(in exprflow 0.1 they set only the VAE phase of LatentFlow, PerturbationFlow and PopulationFlow, and only the flow of TrajectoryFlow); pass vae_steps= and "
                      "flow_steps= to set each phase.", FutureWarning, stacklevel=3)
    first = batch_size if batch_size is not None else defaults["batch_size"]
    if phases == ("flow",) and flow_batch_size is not None:  # a one-phase model: both name its flow
        first = flow_batch_size
    first = int(first)
    budgets = {}
    for i, phase in enumerate(phases):
        size = first if i == 0 else int(flow_batch_size if flow_batch_size is not None else defaults["flow_batch_size"])
        if named[phase] is not None:
            budgets[phase] = PhaseBudget(named[phase], None, size)
        elif general:
            budgets[phase] = PhaseBudget(max_steps, max_epochs, size)
        else:
            default = defaults[f"{phase}_steps"]
            budgets[phase] = PhaseBudget(int(default(size) if callable(default) else default), None, size)
    return budgets
