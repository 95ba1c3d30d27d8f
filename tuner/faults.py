"""Faults that end a run cleanly: a stop signal, a full disk, a refused write or an exhausted memory each become one
line naming what failed and where, with nothing half-written left behind (pure).

What a study or a full run had stored before the fault stays; the same command run again resumes from it.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from tuner.errors import AdvisorError


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM from a scheduler, SIGINT, SIGHUP): the run stops as ctrl+c stops it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 128 + its number."""
        return 128 + self.signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a run as ctrl+c does (SIGINT already raises KeyboardInterrupt)."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into Stopped in the main thread for the block: the running trial is told it failed
    (and is run again on resume) and files are closed, instead of the process vanishing mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


_DISK_FULL = ("No space left on device", "database or disk is full", "Disk quota exceeded", "unexpected pos")
"""What a full disk says through libraries that do not raise OSError (safetensors, SQLite, torch's zip writer)."""
_REFUSED = ("Permission denied", "Read-only file system", "attempt to write a readonly database")


def fault_cause(error: BaseException) -> str | None:
    """The cause of a fault in a few words ('no space left on device', 'permission denied', 'out of memory'), or
    None when the error is not one of these faults."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied" if code != errno.EROFS else "read-only file system"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return "out of memory"
    text = str(error)
    if any(sign in text for sign in _DISK_FULL):
        return "no space left on device"
    if any(sign in text for sign in _REFUSED):
        return "permission denied"
    return None


def fault_line(error: BaseException, doing: str = "") -> str | None:
    """One line for a fault: its cause, what was being done and where (an OSError's file); None for other errors."""
    cause = fault_cause(error)
    if cause is None:
        return None
    where = getattr(error, "filename", None)
    place = f" ({where})" if where and str(where) not in doing else ""
    return f"{doing}: {cause}{place}" if doing else f"{cause}{place}"


@contextlib.contextmanager
def writing(target: Path, partial: Path | None = None) -> Iterator[None]:
    """Write `target` in the block; on a fault, remove what was half-written (`partial`, else `target`) and raise
    AdvisorError naming the target and the cause. Other errors pass unchanged (after the same clean-up)."""
    try:
        yield
    except BaseException as error:
        _remove(partial if partial is not None else target)
        line = fault_line(error, f"cannot write {target}") if isinstance(error, Exception) else None
        if line is None:
            raise
        raise AdvisorError(line) from error


def _remove(path: Path) -> None:
    """Remove a file or directory if it is there, ignoring what cannot be removed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
