"""What an evaluation scores (pure): its settings, the benchmarks named on the command line, seeded item subsets."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tuner.scoring.benchmarks.base import PROMPT_FORMATS, Benchmark
from tuner.scoring.benchmarks.registry import BENCHMARKS
from tuner.scoring.benchmarks.roles import FORGETTING_TASKS

SCORING_VERSION = 1
"""Bumped when prompts, extraction or metrics change, so cached base-model scores are recomputed."""


def parse_tasks(text: str) -> tuple[str, ...]:
    """Benchmark names from a comma-separated list, in the order given; ValueError for an unknown name."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise ValueError(f"unknown benchmark {', '.join(unknown) or repr(text)}: choose from {', '.join(BENCHMARKS)}")
    return names


def subset_indices(benchmark: Benchmark, limit: int | None, seed: int) -> list[int] | None:
    """The items a limited run scores: a seeded sample from the benchmark's pool; None scores every item."""
    pool = benchmark.pool or benchmark.size
    if limit is None or limit >= benchmark.size:
        return None
    return sorted(random.Random(f"{benchmark.name}:{seed}").sample(range(pool), min(limit, pool)))


def item_count(benchmark: Benchmark, limit: int | None) -> int:
    """How many items a run with this limit scores."""
    if limit is None or limit >= benchmark.size:
        return benchmark.size
    return min(limit, benchmark.pool or benchmark.size)


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation scores and how; everything but the model that a cached score depends on."""

    tasks: tuple[str, ...] = FORGETTING_TASKS
    """Benchmarks to score, by lm-eval task name."""
    limit: int | None = None
    """Items per benchmark (a seeded sample); None scores every item."""
    seed: int = 0
    """Seed of the sample of items."""
    prompt_format: str = "chat"
    """How GSM8K and HumanEval are prompted: 'chat' or 'plain' (see PROMPT_FORMATS)."""
    allow_code_execution: bool = False
    """HumanEval runs the model's code (in tuner.scoring.sandbox) only when this is set."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.tasks if name not in BENCHMARKS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown benchmark {', '.join(unknown) or '(none)'}: choose from {', '.join(BENCHMARKS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt format must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if not self.allow_code_execution and any(BENCHMARKS[name].runs_code for name in self.tasks):
            raise ValueError(
                "HumanEval runs the model's generated code; pass --allow-code-execution to allow it "
                "(each sample runs in a sandbox: its own process group, CPU, memory, file and process limits, "
                "no network, a throwaway directory)"
            )

    def cache_key(self, task: str, model_identity: str, source: str) -> dict[str, object]:
        """Everything a score of `task` depends on besides the weights' identity; `source` is 'mirror' or 'hub'."""
        key: dict[str, object] = {
            "model": model_identity,
            "task": task,
            "limit": self.limit,
            "seed": self.seed,
            "source": source,
            "version": SCORING_VERSION,
        }
        if BENCHMARKS[task].role == "learning":
            key["prompt_format"] = self.prompt_format
        return key
