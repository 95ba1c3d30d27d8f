"""A run directory's life: checked before a command writes it, held by one process at a time, its JSON files
written whole (pure)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tuner.errors import AdvisorError
from tuner.faults import writing


def write_json(path: Path, payload: object) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    staging = path.with_name(f".{path.name}.tmp")
    with writing(path, staging):  # a full disk: the staging file goes, and one line says where
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


OUT_KINDS = ("study", "train", "export", "files")
"""What a command writes into its --out: a study's run directory (tune, report), a training run (train), an
export (export), or files beside what is there (spectrum)."""
STUDY_MARKERS = ("study.db", "settings.json", "trials")
"""What a study leaves in its run directory (tuner/study/run.py, tuner/study/report.py)."""
TRAIN_MARKERS = ("train_settings.json", "checkpoints")
"""What a training run leaves in its directory from its start (tuner/fullrun/train.py)."""
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
"""A trained PEFT adapter: its config and its weights (an exported PEFT config has no weights)."""
EXPORT_PRESET = "preset.yaml"
"""The preset every export writes beside the tool's file (advisor/exports)."""
_PROBE_PREFIX = ".advisor-probe-"


def check_out_dir(out: Path, kind: str, *, force: bool = False) -> None:
    """AdvisorError unless OUT can be written as KIND's directory, before anything is loaded or written.

    OUT must be a directory or creatable as one (tried with a scratch directory, removed at once), and not another
    kind of run's: `train` refuses a study's run directory, `study` a training run's; `export` refuses any
    directory with something in it (an adapter, a run, an export) unless `force`.
    """
    if kind not in OUT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(OUT_KINDS)}, got {kind!r}")
    _check_writable(out)
    try:
        held, words = held_by(out) if out.is_dir() else ("", "")
    except OSError as error:
        raise AdvisorError(f"--out {out} cannot be read ({error.strerror})") from None
    if kind == "train" and held == "study":
        raise AdvisorError(f"--out {out} holds {words}: advisor train writes a training run; choose another --out")
    if kind == "study" and held == "train":
        raise AdvisorError(f"--out {out} holds {words}: a study writes its own run directory; choose another --out")
    if kind == "export" and held and not force:
        raise AdvisorError(f"--out {out} holds {words}: pass --force to export into it anyway, or choose another --out")


def _check_writable(out: Path) -> None:
    """AdvisorError unless OUT is a writable directory, or can be made in its nearest existing parent."""
    if out.exists() and not out.is_dir():
        raise AdvisorError(f"--out {out} is a file, not a directory")
    nearest = out
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise AdvisorError(f"--out {out} cannot be created: {nearest} is a file, not a directory")
    try:  # os.access says yes to root everywhere, /proc and read-only mounts included: try it
        os.rmdir(tempfile.mkdtemp(prefix=_PROBE_PREFIX, dir=nearest))
    except OSError as error:
        where = "is not writable" if nearest == out else f"cannot be created: {nearest} takes no new directories"
        raise AdvisorError(f"--out {out} {where} ({error.strerror})") from None


def held_by(directory: Path) -> tuple[str, str]:
    """What a directory holds: ('study' | 'train' | 'adapter' | 'export' | 'other', in words), ('', '') if empty."""
    named = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    named = [name for name in named if not name.startswith(_PROBE_PREFIX)]
    present = {name.rstrip("/") for name in named}
    study = [name for name in named if name.rstrip("/") in STUDY_MARKERS]
    train = [name for name in named if name.rstrip("/") in TRAIN_MARKERS]
    weights = [name for name in ADAPTER_WEIGHTS if name in present]
    if not named:
        return "", ""
    if study:
        return "study", f"a study's run ({', '.join(study)})"
    if train:
        return "train", f"a training run ({', '.join(train)})"
    if ADAPTER_CONFIG in present and weights:
        return "adapter", f"a trained adapter ({ADAPTER_CONFIG}, {weights[0]})"
    if EXPORT_PRESET in present:
        return "export", f"an export ({EXPORT_PRESET})"
    shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    return "other", f"other files ({shown})"
