"""A run directory's life: one process holds it at a time, and its JSON files are written whole (pure)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tuner.errors import AdvisorError


def write_json(path: Path, payload: object) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(staging, path)


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process; a second `advisor tune` on it stops with a clear error."""
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AdvisorError(f"{run_dir} is in use by another advisor process") from None
        yield
