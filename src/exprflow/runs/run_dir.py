"""The run directory of ``exprflow fit``: owned by one process, never mixed, resumable, written by rank 0.

::

    OUT/.lock             the process that owns the run while it runs (:mod:`exprflow.runs.run_lock`)
    OUT/run.json          the options the run was started with (checked again on --resume) and its
                          record ``exprflow_run``: id, status (running | complete), phases finished
    OUT/checkpoints/      training checkpoints (flow.ckpt; vae.ckpt for two-phase models)
    OUT/model/            the trained model; replaced only whole (built in model.tmp-<id>, then renamed)
    OUT/report.md         what was run, with its figures (loss.png; exprflow.run_report)

A run is readable only when its record says ``complete`` and ``model/config.json`` is the one the
record names. ``--overwrite`` marks the old run ``running`` under a new id before anything else, so an
interrupted replacement is never served as the old model; it is resumed with ``--resume``.

In a multi-process run (Lightning's launcher, ``torchrun``, SLURM's ``srun``) every process runs the
command; only the process of global rank 0 checks, locks, creates and writes the directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from exprflow.errors import ExprflowInputError
from exprflow.io import write_text_atomic
from exprflow.runs.run_lock import LOCK_FILE, describe_owner, lock_is_live, read_lock

RUN_FILE = "run.json"
RECORD_KEY = "exprflow_run"
CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"
REPORT_FILES = ("report.md", "loss.png", "umap.png", "metrics.png")  # written by exprflow.run_report
RUNNING, COMPLETE = "running", "complete"
EXPERIMENT_KEY = "experiment"  # the option holding the ExperimentSpec of a run written by exprflow.experiment


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0, judged from the launcher's environment variables.

    ``RANK`` (torchrun), ``SLURM_PROCID`` (srun), ``JSM_NAMESPACE_RANK`` (LSF); otherwise Lightning's
    own launcher, which gives its child processes ``LOCAL_RANK`` and every node a ``NODE_RANK``.
    """
    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if var in os.environ:
            return int(os.environ[var]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def _holds_a_run(out: Path) -> bool:
    """Whether ``out`` existed before this command took its lock, or holds anything besides the lock files."""
    if not out.exists():
        return False
    return not (read_lock(out) or {}).get("created_dir", False) or any(
        not p.name.startswith(LOCK_FILE) for p in out.iterdir())


def check_run_dir(out: str | os.PathLike, options: dict[str, Any], *, overwrite: bool, resume: bool,
                  resumable: bool = True) -> Path:
    """Check (on rank 0, holding the run's lock, writing nothing) that ``out`` may be used; returns its
    checkpoint folder.

    * new run: ``out`` must hold no run unless ``overwrite``;
    * ``resume``: ``out`` must hold a ``run.json`` with the same ``options`` and an unfinished run.

    ``resumable=False`` (``exprflow demo``, which has no ``--resume``) leaves ``--resume`` out of the message.
    """
    out = Path(out)
    if resume and overwrite:
        raise ExprflowInputError("--resume continues a run and --overwrite replaces it; pass only one of them.")
    if not is_launch_rank_zero():
        return out / CHECKPOINT_DIR
    if out.exists() and not out.is_dir():
        raise ExprflowInputError(f"{out} is a file, not a run directory; remove it or choose another --out.")
    if resume:
        _check_resumable(out, options)
    elif _holds_a_run(out) and not overwrite:
        resume_hint = "Pass --resume to continue that run, --overwrite to replace it," if resumable else "Pass --overwrite,"
        raise ExprflowInputError(f"{out} already exists. {resume_hint} or choose another --out directory.")
    return out / CHECKPOINT_DIR


def read_run(out: str | os.PathLike) -> tuple[dict, dict | None]:
    """``(options, record)`` of ``out/run.json``; ``record`` is ``None`` for a run written before records."""
    run_file = Path(out) / RUN_FILE
    try:
        saved = json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExprflowInputError(f"{run_file} is corrupted ({exc}); start the run again with exprflow fit --overwrite.") from None
    if not isinstance(saved, dict):
        raise ExprflowInputError(f"{run_file} is not a run record; start the run again with exprflow fit --overwrite.")
    record = saved.pop(RECORD_KEY, None)
    return saved, record if isinstance(record, dict) else None


def _write_run(out: Path, options: dict[str, Any], record: dict) -> None:
    write_text_atomic(json.dumps({**options, RECORD_KEY: record}, indent=2, sort_keys=True), out / RUN_FILE)


def start_run_dir(out: str | os.PathLike, options: dict[str, Any], *, resume: bool,
                  outputs: tuple[str, ...] = REPORT_FILES) -> str | None:
    """Mark the run ``running`` (rank 0) and return its id.

    A new run first writes ``run.json`` with a new id (so an old model left in ``model/`` no longer
    counts as this directory's run), then removes the old run's checkpoints and its ``outputs`` (the
    report and its figures), so that they can never be resumed into, or read as, the new run. A resumed
    run keeps its id. Leftovers of an interrupted model swap are removed in both cases.
    """
    out = Path(out)
    if not is_launch_rank_zero():
        return None
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        options, record = read_run(out)
        record = record or {"id": uuid.uuid4().hex[:12], "phases": []}
        record["status"] = RUNNING
        _write_run(out, options, record)
    else:
        record = {"id": uuid.uuid4().hex[:12], "status": RUNNING, "phases": [], "started": time.time()}
        _write_run(out, options, record)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        for name in outputs:  # the old run's report must not describe the new one
            (out / name).unlink(missing_ok=True)
    for leftover in out.glob(f"{MODEL_DIR}.*-*"):  # model.tmp-<id>, model.trash-<id>
        shutil.rmtree(leftover, ignore_errors=True)
    return record["id"]


def record_phase(checkpoint_path: str | os.PathLike | None) -> None:
    """Note in ``run.json`` that the training phase checkpointed to ``checkpoint_path`` finished
    (its file name: ``vae``, ``flow``); nothing when the checkpoint is not in a run directory."""
    if checkpoint_path is None or not is_launch_rank_zero():
        return
    path = Path(checkpoint_path)
    out = path.parent.parent
    if path.parent.name != CHECKPOINT_DIR or not (out / RUN_FILE).is_file():
        return
    options, record = read_run(out)
    if record is None:
        return
    if path.stem not in record["phases"]:
        record["phases"] = [*record["phases"], path.stem]
        _write_run(out, options, record)


def finish_run_dir(out: str | os.PathLike, model) -> Path:
    """Save ``model`` into ``out/model`` whole and mark the run complete (rank 0).

    The model is written to ``model.tmp-<id>`` and swapped in by renames (old ``model`` to
    ``model.trash-<id>``, the new one to ``model``, then the trash is removed); the record is marked
    ``complete`` last, naming the SHA-256 of the new ``config.json``.
    """
    out = Path(out)
    options, record = read_run(out)
    run_id = (record or {}).get("id", "run")
    tmp, trash, final = out / f"{MODEL_DIR}.tmp-{run_id}", out / f"{MODEL_DIR}.trash-{run_id}", out / MODEL_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    if final.exists():
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final, trash)
    os.rename(tmp, final)
    shutil.rmtree(trash, ignore_errors=True)
    record = {**(record or {"id": run_id, "phases": []}), "status": COMPLETE, "finished": time.time(),
              "model_config_sha256": config_digest(final)}
    _write_run(out, options, record)
    return final


def config_digest(model_dir: str | os.PathLike) -> str:
    """SHA-256 of a model directory's ``config.json`` (which names its genes, options and loss history)."""
    return hashlib.sha256((Path(model_dir) / "config.json").read_bytes()).hexdigest()


def _resume_hint(out: Path, options: dict) -> str:
    if EXPERIMENT_KEY in options:  # exprflow demo (exprflow.experiment) has no --resume
        return f"Run it again with --overwrite (exprflow demo ... --out {out} --overwrite)."
    return (f"Resume it with the command that started it plus --resume (exprflow fit ... --out {out} --resume), "
            f"or start it again with --overwrite.")


def check_run_readable(out: str | os.PathLike) -> None:
    """Refuse (clear error) a run directory whose model is not the finished model of its own run.

    A directory without ``run.json``, or whose ``run.json`` predates run records, is left to the caller.
    """
    out = Path(out)
    if not (out / RUN_FILE).is_file():
        return
    options, record = read_run(out)
    if record is None:
        return
    owner = read_lock(out)
    if record.get("status") != COMPLETE:
        phases = ", ".join(record.get("phases") or []) or "none"
        if lock_is_live(owner):
            raise ExprflowInputError(f"The run in {out} is still being trained by {describe_owner(owner)} (phases "
                                     f"finished: {phases}). Wait for it to finish, then try again.")
        raise ExprflowInputError(f"The run in {out} did not finish (it was interrupted; training phases finished: "
                                 f"{phases}), so it has no model to use. {_resume_hint(out, options)}")
    model_dir = out / MODEL_DIR
    if not (model_dir / "config.json").is_file():
        raise ExprflowInputError(f"The run in {out} is marked complete but its model directory {model_dir} is missing "
                                 "or incomplete. Train it again with exprflow fit --overwrite.")
    if record.get("model_config_sha256") not in (None, config_digest(model_dir)):
        raise ExprflowInputError(f"{model_dir} is not the model of the run recorded in {out / RUN_FILE} (the directory "
                                 "was mixed from two runs). Train it again with exprflow fit --overwrite.")


def _check_resumable(out: Path, options: dict[str, Any]) -> None:
    if not (out / RUN_FILE).is_file():
        raise ExprflowInputError(
            f"Nothing to resume in {out}: it has no {RUN_FILE} (not a run started by exprflow fit). "
            "Run without --resume to start a new run."
        )
    saved, record = read_run(out)
    differ = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
    if differ:
        detail = ", ".join(f"{k}: was {saved.get(k)!r}, now {options.get(k)!r}" for k in differ)
        raise ExprflowInputError(
            f"--resume needs the options the run in {out} was started with; these differ: {detail}."
        )
    finished = (out / MODEL_DIR).exists() and (record is None or record.get("status") == COMPLETE)
    if finished:  # a complete record whose model/ was removed is resumed: its checkpoints rebuild the model
        raise ExprflowInputError(f"The run in {out} has finished already (its model is in {out / MODEL_DIR}); nothing to resume.")
