"""How many items a study scores (pure), priced before anything is timed.

Scoring is priced from each benchmark's `item_cost` (tokens of training one item costs) and the training speed a
trial measured, so nothing is timed only to decide. Trials long enough to be scored on MIN_STUDY_ITEMS items
within EVAL_SHARE of their training are each scored; otherwise only the study's pick is, after the search, with
the base model on the same items, within PICK_SHARE of the study's training time (at least MIN_PICK_ITEMS) and no
more than its general mean needs for a standard error of TARGET_GENERAL_STDERR.
"""

from __future__ import annotations

import math

EVAL_SHARE = 0.2
"""At most this share of a trial's training time goes to scoring it (issue: evaluation <= 20 % of a trial)."""
MIN_STUDY_ITEMS = 10
"""Fewer items per benchmark than this in each trial and only the pick is scored (10 items: a standard error
of about 0.15 on one benchmark's accuracy near 0.5)."""
ADAPTER_OVERHEAD = 1.25
"""An unmerged LoRA adapter's extra cost per forward pass, allowed for when sizing the subsets."""
PICK_SHARE = 0.5
"""Scoring the pick and the base model takes about this share of the study's training time."""
MIN_PICK_ITEMS = 10
"""The pick is scored on at least this many items per benchmark, whatever the share allows."""
TARGET_GENERAL_STDERR = 0.03
"""The pick's general mean is scored to this standard error at worst (every accuracy 0.5); more items than that
buy no finding worth their time."""


def items_for_general_stderr(target: float, benchmarks: int = 3) -> int:
    """Items per benchmark that bring the mean of `benchmarks` accuracies to `target` standard error at worst: the
    mean's error is sqrt(sum p(1-p) / (n-1)) / benchmarks, largest at p = 0.5."""
    if target <= 0:
        raise ValueError(f"a target standard error must be positive, got {target}")
    return 1 + math.ceil(0.25 / (benchmarks * target**2))


MAX_PICK_ITEMS = items_for_general_stderr(TARGET_GENERAL_STDERR)
"""Nor on more than this many: 94, a general mean to 0.03 (and one benchmark's accuracy to about 0.05)."""


def seconds_per_item(item_costs: dict[str, float], train_tokens_per_second: float) -> dict[str, float]:
    """Each benchmark's estimated seconds per item on the base model, from the measured training speed."""
    speed = max(train_tokens_per_second, 1e-9)
    return {name: cost / speed for name, cost in item_costs.items()}


def items_within_share(train_seconds: float, per_item: dict[str, float], share: float = EVAL_SHARE) -> int:
    """Items per benchmark that keep scoring an adapter within `share` of a trial's training time."""
    seconds = sum(per_item.values()) * ADAPTER_OVERHEAD
    if seconds <= 0:
        return 0
    return int(share * train_seconds / seconds)


def pick_items(train_seconds: float, per_item: dict[str, float]) -> int:
    """Items per benchmark for scoring the pick (its adapter merged, so at the base model's speed) and the base."""
    seconds = 2 * sum(per_item.values())
    if seconds <= 0:
        return MIN_PICK_ITEMS
    return max(MIN_PICK_ITEMS, min(MAX_PICK_ITEMS, int(PICK_SHARE * train_seconds / seconds)))


def scoring_seconds(items: int, per_item: dict[str, float]) -> float:
    """Estimated seconds to score the pick (merged) and the base model on `items` items of each benchmark."""
    return items * sum(per_item.values()) * 2
