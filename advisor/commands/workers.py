"""`advisor tune --workers N`: N worker processes on this machine, one per GPU where there are GPUs (several CPU
processes otherwise), each running the same `advisor tune` as a worker of the study; their lines are passed on,
each under its worker's name."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

WORKER_FLAG = "--worker-process"
"""The hidden flag a worker process runs under: it runs trials only (its parent holds the run directory)."""


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The worker's own `advisor tune` arguments: the parent's without --workers and --json, with WORKER_FLAG."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers=") or arg == "--json":
            continue
        kept.append(arg)
    return [*kept, WORKER_FLAG]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (none on a machine without CUDA)."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [device for device in named.split(",") if device.strip() and device.strip() != "-1"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_environments(workers: int, gpus: list[str], cores: int) -> list[dict[str, str]]:
    """Each worker's environment additions: its GPU (round robin where workers outnumber them), or on CPU its share
    of the cores as its thread count."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)]} for index in range(workers)]
    threads = str(max(1, cores // workers))
    cpu = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return [dict(cpu) for _ in range(workers)]


def run_workers(argv: Sequence[str], workers: int, write: Callable[[str], None]) -> list[int]:
    """Start `workers` worker processes of the study `argv` describes, pass their output on line by line (each line
    under "worker K:"), and wait for them; returns their exit codes. A worker that dies leaves its trial to the
    others (Optuna's heartbeat fails it and it is run again)."""
    environments = worker_environments(workers, visible_gpus(), os.cpu_count() or 1)
    command = [sys.executable, "-m", "advisor.cli", "tune", *worker_argv(argv)]
    processes = []
    for environment in environments:
        processes.append(
            subprocess.Popen(
                command,
                env={**os.environ, "COLUMNS": "1000", **environment},  # whole lines: the parent wraps them
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        )
    gpus = [environment.get("CUDA_VISIBLE_DEVICES") for environment in environments]

    def relay(index: int, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        on = f" (GPU {gpus[index]})" if gpus[index] else ""
        for line in process.stdout:
            write(f"worker {index + 1}{on}: {line.rstrip()}")

    relays = [threading.Thread(target=relay, args=(i, p), daemon=True) for i, p in enumerate(processes)]
    for thread in relays:
        thread.start()
    try:
        codes = [process.wait() for process in processes]
    except BaseException:
        for process in processes:
            process.terminate()
        raise
    for thread in relays:
        thread.join(timeout=5)
    return codes
