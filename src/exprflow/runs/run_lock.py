"""One process per run directory: the exclusive lock file ``OUT/.lock``.

``exprflow fit`` takes the lock before it reads any data and releases it when it exits, so two
commands given the same ``--out`` can never train into one directory: the second one stops at once
with a message naming the process that holds the run.

The lock file is created complete (written under a temporary name, then hard-linked onto ``.lock``,
which fails when the name exists) and holds the owner's process id, host name and start time. A lock
left by a process that no longer runs on this host (a run killed with ``kill -9``) is stale: it is
taken over with a warning. A lock written on another host cannot be checked from here and is refused.

The command line runs a locked command inside :func:`stop_on_signals`, so that ``SIGTERM`` (a scheduler
ending a job) and ``SIGINT`` (Ctrl-C) unwind the command like an error: the lock is released and the
run is left as it was at that moment (unfinished, resumable), instead of leaving a stale lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def read_lock(out: str | os.PathLike) -> dict | None:
    """The owner recorded in ``out/.lock`` (``pid``, ``host``, ``started``), or ``None`` without a lock."""
    try:
        text = (Path(out) / LOCK_FILE).read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
        return owner if isinstance(owner, dict) else {}
    except json.JSONDecodeError:
        return {}


def lock_is_live(owner: dict | None) -> bool:
    """Whether ``owner`` (from :func:`read_lock`) may still be running: a live process on this host, or
    any process on another host (which cannot be checked from here)."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    return _pid_alive(int(owner.get("pid", -1)))


def describe_owner(owner: dict) -> str:
    """``process 123 on host h (since 2026-01-01 08:00:00 UTC)``."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(owner.get("started", 0))))
    return f"process {owner.get('pid', '?')} on host {owner.get('host', '?')} (since {started})"


class RunLock:
    """Exclusive ownership of the run directory ``out`` (created if missing) while the ``with`` block runs.

    Raises :class:`~exprflow.errors.ExprflowInputError` when another live process holds it, or when the
    lock was written on another host. On release, the lock file is removed, and so is ``out`` when this
    lock created it and nothing else was written there.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self._created_dir = False
        self._held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise ExprflowInputError(f"{self.out} is a file, not a run directory; remove it or choose another --out.")
        self._created_dir = not self.out.exists()
        self.owner["created_dir"] = self._created_dir  # the directory was not there before this command
        self.out.mkdir(parents=True, exist_ok=True)
        if self._link():
            self._held = True
            return
        with open(self.out / f"{LOCK_FILE}.takeover", "a") as guard:  # one takeover at a time
            fcntl.flock(guard, fcntl.LOCK_EX)
            owner = read_lock(self.out)
            if owner is not None and (lock_is_live(owner) or not self._link_after_stale(owner)):
                self._refuse(owner)
            if owner is None and not self._link():
                self._refuse(read_lock(self.out) or {})
        self._held = True

    def _link(self) -> bool:
        tmp = self.out / f"{LOCK_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.owner))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _link_after_stale(self, owner: dict) -> bool:
        logger.warning("%s was left by %s, which no longer runs (killed?); taking the run directory over.",
                       self.path, describe_owner(owner) if owner else "an unreadable lock")
        # a directory that the killed command had created and left empty still counts as new
        self.owner["created_dir"] = self._created_dir or bool(owner.get("created_dir"))
        self.path.unlink(missing_ok=True)
        return self._link()

    def _refuse(self, owner: dict) -> None:
        if owner.get("host", socket.gethostname()) != socket.gethostname():
            raise ExprflowInputError(
                f"{self.out} is locked by {describe_owner(owner)}, another machine, so exprflow cannot tell whether "
                f"that run still goes on. Wait for it to finish, or, if no exprflow command runs there on this "
                f"directory, remove {self.path} and try again."
            )
        raise ExprflowInputError(
            f"{self.out} is in use by {describe_owner(owner)}: another exprflow command is writing this run. Wait for "
            "it to finish (or stop it), or choose another --out directory."
        )

    def release(self) -> None:
        """Remove the lock if this process still holds it (and ``out`` if the lock created it and it is empty)."""
        if not self._held:
            return
        self._held = False
        if (read_lock(self.out) or {}).get("pid") == self.owner["pid"]:
            self.path.unlink(missing_ok=True)
        (self.out / f"{LOCK_FILE}.takeover").unlink(missing_ok=True)
        if self._created_dir:
            try:
                self.out.rmdir()  # only succeeds when nothing was written
            except OSError:
                pass


class RunInterrupted(SystemExit):
    """Raised in the main thread by :func:`stop_on_signals` when the process receives ``SIGTERM`` or ``SIGINT``.

    A ``SystemExit`` with the shell's exit status for a signal (128 + its number), so that code catching
    ``Exception`` does not swallow it, every ``with`` block (the run's lock) is left, and the process ends.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
    """While the block runs, turn ``signals`` into :class:`RunInterrupted`; restore the previous handlers after.

    Signal handlers can only be set in the main thread: elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum, frame):
        logger.warning("received %s: stopping; the run directory's lock is released and the run can be resumed.",
                       signal.Signals(signum).name)
        raise RunInterrupted(signum)

    previous = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, _stop)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
