"""The run directory of ``exprflow fit``: never overwritten by accident, resumable, written by rank 0.

::

    OUT/run.json          the options the run was started with (checked again on --resume)
    OUT/checkpoints/      training checkpoints (flow.ckpt; vae.ckpt for two-phase models)
    OUT/model/            the trained model, written once training has finished
    OUT/report.md         what was run, with its figures (loss.png; exprflow.run_report)

In a multi-process run (Lightning's launcher, ``torchrun``, SLURM's ``srun``) every process runs the
command; only the process of global rank 0 checks, creates and writes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from exprflow.errors import ExprflowInputError
from exprflow.io import write_text_atomic

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0, judged from the launcher's environment variables.

    ``RANK`` (torchrun), ``SLURM_PROCID`` (srun), ``JSM_NAMESPACE_RANK`` (LSF); otherwise Lightning's
    own launcher, which gives its child processes ``LOCAL_RANK`` and every node a ``NODE_RANK``.
    """
    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if var in os.environ:
            return int(os.environ[var]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def check_run_dir(out: str | os.PathLike, options: dict[str, Any], *, overwrite: bool, resume: bool) -> Path:
    """Check (on rank 0, writing nothing) that ``out`` may be used; returns its checkpoint folder.

    * new run: ``out`` must not exist unless ``overwrite``;
    * ``resume``: ``out`` must hold a ``run.json`` with the same ``options`` and no finished model.
    """
    out = Path(out)
    if resume and overwrite:
        raise ExprflowInputError("--resume continues a run and --overwrite replaces it; pass only one of them.")
    if not is_launch_rank_zero():
        return out / CHECKPOINT_DIR
    if resume:
        _check_resumable(out, options)
    elif out.exists() and not overwrite:
        raise ExprflowInputError(
            f"{out} already exists. Pass --resume to continue that run, --overwrite to replace it, or choose "
            "another --out directory."
        )
    elif out.exists() and not out.is_dir():
        raise ExprflowInputError(f"{out} is a file, not a run directory; remove it or choose another --out.")
    return out / CHECKPOINT_DIR


def start_run_dir(out: str | os.PathLike, options: dict[str, Any], *, resume: bool) -> None:
    """Create ``out`` and write ``run.json`` (rank 0, new runs); a replaced run's old checkpoints are removed
    so that they can never be resumed into the new run."""
    out = Path(out)
    if resume or not is_launch_rank_zero():
        return
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(options, indent=2, sort_keys=True), out / RUN_FILE)


def _check_resumable(out: Path, options: dict[str, Any]) -> None:
    run_file = out / RUN_FILE
    if not run_file.is_file():
        raise ExprflowInputError(
            f"Nothing to resume in {out}: it has no {RUN_FILE} (not a run started by exprflow fit). "
            "Run without --resume to start a new run."
        )
    try:
        saved = json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExprflowInputError(f"{run_file} is corrupted ({exc}); start the run again with --overwrite.") from None
    differ = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
    if differ:
        detail = ", ".join(f"{k}: was {saved.get(k)!r}, now {options.get(k)!r}" for k in differ)
        raise ExprflowInputError(
            f"--resume needs the options the run in {out} was started with; these differ: {detail}."
        )
    if (out / MODEL_DIR).exists():
        raise ExprflowInputError(f"The run in {out} has finished already (its model is in {out / MODEL_DIR}); nothing to resume.")
