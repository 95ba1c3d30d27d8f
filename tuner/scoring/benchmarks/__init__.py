"""The benchmarks (pure): one module per benchmark declares what it scores, the mirror files it reads and its task.

A benchmark is a module here declaring a `Benchmark` (its name, metric, size, mirror files, and how its
lm-eval task is built, mirror reader included), listed in `registry.REGISTERED`; its tests sit in
tests/tuner/scoring/benchmarks/. The rest of this package is about all benchmarks: learning and forgetting
(`roles`), what an evaluation scores (`scoring`) and how much a study's trials are scored (`budget`).
"""

from __future__ import annotations

from tuner.scoring.benchmarks.base import PROMPT_FORMATS, Benchmark
from tuner.scoring.benchmarks.budget import (
    ADAPTER_OVERHEAD,
    EVAL_SHARE,
    MAX_PICK_ITEMS,
    MIN_PICK_ITEMS,
    MIN_STUDY_ITEMS,
    PICK_SHARE,
    TARGET_GENERAL_STDERR,
    items_within_share,
    pick_items,
    scoring_seconds,
    seconds_per_item,
)
from tuner.scoring.benchmarks.registry import BENCHMARKS, REGISTERED, build_task
from tuner.scoring.benchmarks.roles import (
    FORGETTING_TASKS,
    LEARNING_TASK,
    difference_stderr,
    forgetting_score,
    forgetting_stderr,
    paired_stderr,
    score_change,
    score_stderr,
    stored_stderr,
    study_benchmarks,
)
from tuner.scoring.benchmarks.scoring import SCORING_VERSION, EvalSettings, item_count, parse_tasks, subset_indices

__all__ = [
    "ADAPTER_OVERHEAD",
    "BENCHMARKS",
    "EVAL_SHARE",
    "FORGETTING_TASKS",
    "LEARNING_TASK",
    "MAX_PICK_ITEMS",
    "MIN_PICK_ITEMS",
    "MIN_STUDY_ITEMS",
    "PICK_SHARE",
    "PROMPT_FORMATS",
    "REGISTERED",
    "SCORING_VERSION",
    "TARGET_GENERAL_STDERR",
    "Benchmark",
    "EvalSettings",
    "build_task",
    "difference_stderr",
    "forgetting_score",
    "forgetting_stderr",
    "item_count",
    "items_within_share",
    "paired_stderr",
    "parse_tasks",
    "pick_items",
    "score_change",
    "score_stderr",
    "scoring_seconds",
    "seconds_per_item",
    "stored_stderr",
    "study_benchmarks",
    "subset_indices",
]
