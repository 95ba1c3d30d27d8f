"""A full run's checkpoints and identity: the newest complete checkpoint to resume from (half-written ones removed),
and the settings a run directory trained, which a resumed run must share."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    from tuner.settings import RunSettings

CHECKPOINTS = "checkpoints"
SETTINGS_FILE = "train_settings.json"
OTHER_OUT = "resume it with the same settings or choose another --out"
"""How a run directory holding other settings is left (the app words its own way on)."""
KEPT_CHECKPOINTS = 2
"""Checkpoints kept on disk: the newest, and the one before it in case the newest was cut short."""


def latest_checkpoint(checkpoints: Path, said: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete checkpoint; newer ones cut short by a kill or a full disk are removed (and `said`).

    Trainer writes a checkpoint's trainer_state.json last, so a checkpoint whose state file reads back
    whole is complete.
    """
    if not checkpoints.is_dir():
        return None
    found = [p for p in checkpoints.iterdir() if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")), reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)  # cut short mid-save: the one before it is whole
            if said is not None:
                said(f"removed {path}: it was cut short while being written")
    return None


def check_identity(out_dir: Path, settings: RunSettings) -> None:
    """Refuse to resume a run directory that trained other settings; record them in a new one."""
    from tuner.rundir import write_json

    wanted = json.loads(json.dumps(settings.identity()))
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            differing = sorted(k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k))
            raise AdvisorError(
                f"{out_dir} holds a training run with other settings ({', '.join(differing)} differ); {OTHER_OUT}"
            )
        return
    write_json(path, wanted)
