"""Training checkpoints that survive ``kill -9``: atomic writes, safe loads, exact resumption.

A checkpoint is Lightning's training state (weights, optimiser, LR schedule, loop counters) plus what
exprflow adds: the plans' EMA shadow and loss history (their ``on_save_checkpoint``) and the random
number generator states of every process (:class:`StepCheckpoint`). Everything is plain tensors,
numbers, strings and containers, so it loads with ``torch.load(weights_only=True)``.

* :func:`write_checkpoint` writes to a temporary file in the same directory, flushes it to disk and
  moves it into place with ``os.replace``: a checkpoint file is always complete or absent.
* :func:`read_checkpoint` refuses missing, truncated, corrupted or foreign files with an
  :class:`~exprflow.errors.ExprflowInputError` that names the file and what to do.
* :class:`AtomicCheckpointIO` makes Lightning use both (``Trainer(plugins=[AtomicCheckpointIO()])``).
* :class:`StepCheckpoint` saves every ``every`` optimiser steps and at the end of training, and puts the
  RNG states back before the first resumed step, so that a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from exprflow.errors import ExprflowInputError
from exprflow.persistence.model_dir import unsafe_load_reason

logger = logging.getLogger(__name__)

#: key marking a checkpoint written by exprflow (its value is the format version)
FORMAT_KEY = "exprflow_checkpoint"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- files
def write_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary sibling file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({**checkpoint, FORMAT_KEY: FORMAT_VERSION}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`write_checkpoint` with ``torch.load(weights_only=True)``.

    Raises :class:`ExprflowInputError` for a missing, truncated or corrupted file, a file holding
    pickled code, or a file that is not an exprflow training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ExprflowInputError(f"No checkpoint at {path}. Start the run without --resume, or point to its run directory.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad bytes, or a pickle that is not plain tensors
        raise ExprflowInputError(
            f"Checkpoint {path} is corrupted or only partly written, or holds pickled code "
            f"({unsafe_load_reason(exc)}). Delete it and resume from an "
            "older copy, or start the run again with --overwrite."
        ) from None
    if not isinstance(checkpoint, dict) or FORMAT_KEY not in checkpoint:
        raise ExprflowInputError(
            f"{path} is not an exprflow training checkpoint (no {FORMAT_KEY!r} entry). Resume only from the "
            "checkpoints/ folder of an exprflow run."
        )
    missing = [k for k in ("state_dict", "loops", "optimizer_states", "global_step") if k not in checkpoint]
    if missing:
        raise ExprflowInputError(f"Checkpoint {path} lacks {missing}; it is incomplete. Start the run again with --overwrite.")
    return checkpoint


class AtomicCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O through :func:`write_checkpoint` / :func:`read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        write_checkpoint(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location=map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- RNG states as tensors
def rng_state(device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The global RNG states (torch CPU, CUDA of ``device``, numpy legacy, Python ``random``) as tensors."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, _ = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([gauss], dtype=torch.float64),
        "python": torch.tensor([version, *words], dtype=torch.int64),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
    """Restore the states returned by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu().clone())  # clone: a view's offset would be ignored
    pos, has_gauss = (int(v) for v in state["numpy_rest"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss,
                         float(state["numpy_gauss"][0])))
    words = [int(v) for v in state["python"]]
    random.setstate((words[0], tuple(words[1:]), None))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].to(torch.uint8).cpu().clone(), device)


def rank_seed(seed: int, rank: int) -> int:
    """Seed of process ``rank``'s torch RNG in a multi-process run (rank 0 keeps ``seed``)."""
    return int(seed) if rank == 0 else (int(seed) * 1_000_003 + 7919 * int(rank)) % (2**63)


# ----------------------------------------------------------------------------- the callback
class StepCheckpoint(L.Callback):
    """Save a checkpoint to ``path`` every ``every`` optimiser steps and when training ends.

    The checkpoint holds each process's RNG states; after a resume they are put back right before the
    first resumed step. In a multi-process run each rank's torch RNG is seeded with
    :func:`rank_seed` at the start, so ranks draw different noise ``x0`` and times ``t``.
    ``every=None`` or ``0`` saves only at the end (and still restores RNG states on resume).
    """

    def __init__(self, path: str | os.PathLike, every: int | None = None, seed: int = 0) -> None:
        if every is not None and int(every) < 0:
            raise ExprflowInputError(f"checkpoint_every must be a positive number of steps (or 0 to disable), got {every}.")
        self.path = Path(path)
        self.every = int(every or 0)
        self.seed = int(seed)
        self._rng_states: list[dict[str, torch.Tensor]] = []
        self._pending: dict[str, torch.Tensor] | None = None
        self._last_saved = -1

    @property
    def state_key(self) -> str:
        return "StepCheckpoint"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None and trainer.world_size > 1:
            torch.manual_seed(rank_seed(self.seed, trainer.global_rank))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            set_rng_state(self._pending, pl_module.device)
            self._pending = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step != self._last_saved:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._last_saved:
            self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gather every rank's RNG states and write the checkpoint (rank 0 writes; all ranks take part)."""
        local = rng_state(pl_module.device)
        if trainer.world_size > 1:
            with warnings.catch_warnings():  # Lightning's own all_gather call is deprecated in torch 2.13
                warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")
                gathered = {k: pl_module.all_gather(v.to(pl_module.device)).cpu() for k, v in local.items()}
            # clone: a row of the gathered tensor is a view, and torch.set_rng_state ignores a view's offset
            self._rng_states = [{k: v[r].clone() for k, v in gathered.items()} for r in range(trainer.world_size)]
        else:
            self._rng_states = [local]
        trainer.save_checkpoint(self.path, weights_only=False)  # full training state, not only weights
        self._last_saved = trainer.global_step
        logger.debug("checkpoint at step %d written to %s", trainer.global_step, self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": list(self._rng_states), "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_states = list(state_dict.get("rng", []))

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks", {}).get(self.state_key, {}).get("rng", [])
        if len(states) != trainer.world_size:
            raise ExprflowInputError(
                f"{self.path} was written by a run with {len(states)} process(es); resume it with the same number "
                f"of devices x nodes (now {trainer.world_size})."
            )
        self._pending = states[trainer.global_rank]
        self._last_saved = int(checkpoint.get("global_step", -1))
