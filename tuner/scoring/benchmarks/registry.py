"""The registry (pure): every benchmark in the order they are listed and scored, and their lm-eval tasks by name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import AdvisorError
from tuner.scoring.benchmarks.arc_challenge import ARC_CHALLENGE
from tuner.scoring.benchmarks.base import PROMPT_FORMATS, Benchmark
from tuner.scoring.benchmarks.gsm8k import GSM8K
from tuner.scoring.benchmarks.hellaswag import HELLASWAG
from tuner.scoring.benchmarks.humaneval import HUMANEVAL
from tuner.scoring.benchmarks.winogrande import WINOGRANDE

if TYPE_CHECKING:
    from lm_eval.api.task import Task

REGISTERED: tuple[Benchmark, ...] = (HELLASWAG, WINOGRANDE, ARC_CHALLENGE, GSM8K, HUMANEVAL)
"""Every benchmark, forgetting first: the order of `advisor eval`'s table and of its --tasks help."""
BENCHMARKS: dict[str, Benchmark] = {benchmark.name: benchmark for benchmark in REGISTERED}


def build_task(name: str, data_dir: Path | None, prompt_format: str = "chat") -> Task:
    """The lm-eval task for one benchmark: the mirror's files when `data_dir` is given, else the hub."""
    if name not in BENCHMARKS:
        raise AdvisorError(f"unknown benchmark {name!r}")
    if prompt_format not in PROMPT_FORMATS:
        raise AdvisorError(f"unknown prompt format {prompt_format!r}: choose from {', '.join(PROMPT_FORMATS)}")
    return BENCHMARKS[name].lm_task(data_dir, prompt_format)
