"""Where training runs: CUDA with bf16 where present, CPU fp32 otherwise; and the process settings trials need."""

from __future__ import annotations

import contextlib
import ctypes.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Runtime:
    """Where trials run: CUDA with bf16 where present, CPU fp32 otherwise."""

    device: torch.device
    dtype: torch.dtype

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """bf16 autocast on CUDA; nothing on CPU."""
        import torch

        if self.is_cuda and self.dtype == torch.bfloat16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> str:
        import torch

        if self.is_cuda:
            return f"{torch.cuda.get_device_name(self.device)} ({str(self.dtype).removeprefix('torch.')})"
        return f"CPU ({torch.get_num_threads()} threads, float32)"


ALLOCATOR_VARIABLE = "ADVISOR_ALLOCATOR"
"""'glibc' keeps the C library's allocator; anything else (or unset) takes jemalloc where it is installed."""
JEMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
"""Where distributions install libjemalloc.so.2 (Debian and Ubuntu: the libjemalloc2 package)."""


def find_jemalloc() -> str | None:
    """The path of the jemalloc library, or None where it is not installed."""
    for folder in JEMALLOC_DIRS:
        path = Path(folder) / "libjemalloc.so.2"
        if path.is_file():
            return str(path)
    name = ctypes.util.find_library("jemalloc")
    return name if name and Path(name).is_absolute() else None


def allocator() -> str:
    """The allocator this process's memory comes from: 'jemalloc' when it is loaded, else 'glibc'."""
    with contextlib.suppress(OSError):
        if "libjemalloc" in Path("/proc/self/maps").read_text():
            return "jemalloc"
    return "glibc"


def jemalloc_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment that starts the advisor again with jemalloc preloaded, or None when it needs no restart
    (jemalloc already loaded, not installed, or ADVISOR_ALLOCATOR=glibc).

    CPU training allocates and frees large activation buffers every step. glibc keeps much of what is freed, and
    returning it at once (a fixed mmap threshold) slows the steps; jemalloc returns it at about glibc's speed
    (bench/memory_estimate.py --allocators compares the three), so the memory estimate holds for the run as it
    is started."""
    if environ.get(ALLOCATOR_VARIABLE, "").lower() == "glibc" or allocator() == "jemalloc":
        return None
    library = find_jemalloc()
    if library is None:
        return None
    preload = " ".join(part for part in (library, environ.get("LD_PRELOAD", "")) if part)
    return {**environ, "LD_PRELOAD": preload, ALLOCATOR_VARIABLE: "jemalloc"}


def restart_with_jemalloc(command: list[str]) -> None:
    """Replace this process by `python COMMAND` (the advisor: `-m advisor ARGUMENTS`; a bench: its own argv) with
    jemalloc preloaded, where it helps (see jemalloc_environment); returns only when no restart is needed. A restart
    already tried is not tried again."""
    import sys

    environment = jemalloc_environment(os.environ)
    if environment is None or os.environ.get(ALLOCATOR_VARIABLE) == "jemalloc":
        return
    with contextlib.suppress(OSError):
        os.execve(sys.executable, [sys.executable, *command], environment)


HEAP_MMAP_THRESHOLD = 64 << 10
"""Allocations above this size get their own pages from the kernel and give them back when freed."""


def return_freed_memory() -> bool:
    """Make glibc hand freed tensor memory back to the kernel (M_MMAP_THRESHOLD fixed at 64 KiB); False elsewhere.

    By default glibc raises its mmap threshold as large blocks are freed, so after the first step activation
    buffers come from the heap and stay resident once freed, far above the memory estimate
    (bench/memory_estimate.py --allocators).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3
    return bool(mallopt(m_mmap_threshold, HEAP_MMAP_THRESHOLD))


def pick_runtime() -> Runtime:
    """CUDA with bf16 where the GPU supports it (this process's GPU, under the launcher), else CUDA fp32, else CPU
    fp32."""
    import torch

    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        local = os.environ.get("LOCAL_RANK")  # one GPU per process under the launcher
        device = torch.device("cuda", int(local)) if local is not None else torch.device("cuda")
        if local is not None:
            torch.cuda.set_device(device)
        return Runtime(device, dtype)
    return Runtime(torch.device("cpu"), torch.float32)


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and deprecation chatter; the study has its display."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
    # peft looks up the base model's config on the hub when it saves an adapter, to see whether the vocabulary
    # changed; offline it warns and assumes not, which is so (the advisor never resizes it).
    warnings.filterwarnings("ignore", message="Could not find a config file in", module=r"peft\.")
