"""Learning and forgetting (pure): which benchmarks measure each, the paper's forgetting score, what a study scores.

Forgetting is the mean of HellaSwag, WinoGrande and ARC-Challenge accuracy against the base model;
learning is GSM8K accuracy (math) or HumanEval pass@1 (code), as in Biderman et al. 2024.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tuner.scoring.benchmarks.registry import BENCHMARKS

FORGETTING_TASKS = ("hellaswag", "winogrande", "arc_challenge")
LEARNING_TASK = {"math": "gsm8k", "code": "humaneval"}


def forgetting_score(scores: dict[str, float]) -> float | None:
    """The paper's forgetting score: the mean of the three general benchmarks (None unless all three are there)."""
    values = [scores.get(name) for name in FORGETTING_TASKS]
    if any(value is None for value in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def score_stderr(score: float, items: int) -> float:
    """The standard error of a mean of 0/1 item scores, as lm-eval's mean_stderr gives it: sqrt(p(1-p)/(n-1))."""
    if items < 2:
        return math.nan
    return math.sqrt(max(score * (1 - score), 0.0) / (items - 1))


def stored_stderr(score: dict[str, object]) -> float:
    """A stored score's standard error (TaskScore as a dict): lm-eval's, or the same formula where it was not kept."""
    stored = score.get("stderr")
    return float(stored) if stored is not None else score_stderr(float(score["score"]), int(score["items"]))  # type: ignore[arg-type]


def forgetting_stderr(stderrs: Mapping[str, float | None]) -> float | None:
    """The standard error of the forgetting score: its three benchmarks are independent samples (None unless all
    three have one)."""
    values = [stderrs.get(name) for name in FORGETTING_TASKS]
    if any(value is None for value in values):
        return None
    return math.sqrt(sum(value**2 for value in values)) / len(values)  # type: ignore[operator]


def difference_stderr(first: float | None, second: float | None) -> float | None:
    """The standard error of a difference between two scores, taken as independent (conservative for paired items:
    the same items for both make the difference less noisy, not more)."""
    if first is None or second is None:
        return None
    return math.sqrt(first**2 + second**2)


def paired_stderr(first: dict[str, float] | None, second: dict[str, float] | None) -> float | None:
    """The standard error of the mean change from `second` to `first` over the items both scored, from the per-item
    differences (a paired test: what the items share cancels); None with fewer than two shared items."""
    if not first or not second:
        return None
    shared = sorted(set(first) & set(second))
    if len(shared) < 2:
        return None
    differences = [first[item] - second[item] for item in shared]
    mean = sum(differences) / len(differences)
    variance = sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)
    return math.sqrt(variance / len(differences))


NOISE_SE = 2.0
"""A change under this many standard errors is within noise (about 95 %)."""


def score_change(
    value: float,
    base: float,
    error: float | None,
    base_error: float | None,
    paired_error: float | None = None,
) -> dict[str, object]:
    """A score against the base model's: both with their standard errors, the change with its own (from the
    per-item differences where given, else the two errors taken as independent), and whether it is within noise."""
    change_error = paired_error if paired_error is not None else difference_stderr(error, base_error)
    if change_error is not None and math.isnan(change_error):  # under two items: no error to give
        change_error = None
    return {
        "score": value,
        "stderr": error,
        "base": base,
        "base_stderr": base_error,
        "change": value - base,
        "change_stderr": change_error,
        "paired": paired_error is not None,
        "within_noise": change_error is None or abs(value - base) <= NOISE_SE * change_error,
    }


def study_benchmarks(task: str, allow_code_execution: bool) -> tuple[str, ...]:
    """What a study scores its trials on: the forgetting three, and the task's learning benchmark where there is one."""
    learning = LEARNING_TASK.get(task)
    if learning is None or (BENCHMARKS[learning].runs_code and not allow_code_execution):
        return FORGETTING_TASKS
    return (*FORGETTING_TASKS, learning)
