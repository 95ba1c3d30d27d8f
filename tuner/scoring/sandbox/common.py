"""What the sandbox's evaluator and its launcher both use: the limits, the program's name, /proc readers.

Standard library only, and no import of the `tuner` package: the launcher loads this file by path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

PROGRAM_NAME = "program.py"


@dataclass(frozen=True)
class SandboxLimits:
    """What one sample may use before it is stopped."""

    wall_seconds: float = 10.0
    """Wall-clock seconds from start to end; past them the sample is killed and scored 'timeout'."""
    cpu_seconds: int = 10
    """CPU seconds per process (RLIMIT_CPU); past them the kernel kills the process."""
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS): 1 GiB."""
    file_bytes: int = 16 << 20
    """Largest file a process may write (RLIMIT_FSIZE): 16 MiB."""
    processes: int = 64
    """Processes and threads the sample may have at once (RLIMIT_NPROC of its own uid)."""
    output_bytes: int = 64 << 10
    """Stdout and stderr kept, together: 64 KiB, the first and the last half when there is more."""

    def __post_init__(self) -> None:
        if not (isinstance(self.wall_seconds, int | float) and math.isfinite(self.wall_seconds)):
            raise ValueError(f"wall_seconds must be a finite number, got {self.wall_seconds!r}")
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds must be positive, got {self.wall_seconds!r}")
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "processes", "output_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")

    def scratch_bytes(self) -> int:
        """Size of each tmpfs the sample may write (its directory, /tmp, /var/tmp, /dev/shm): four largest files."""
        return 4 * self.file_bytes


def namespace_inode(kind: str) -> int | None:
    """The inode of this process's namespace of one kind ('mnt', 'net'), or None where /proc does not say."""
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return None


def process_uids() -> dict[int, int]:
    """The real uid of every live (not zombie) process in this PID namespace's /proc, by pid."""
    uids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="utf-8") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if fields.get("State", "").split()[:1] != ["Z"] and "Uid" in fields:
            uids[int(name)] = int(fields["Uid"].split()[0])
    return uids
