"""How many items a study scores each trial on (pure): scoring stays within a share of the trial's training time."""

from __future__ import annotations

EVAL_SHARE = 0.2
"""At most this share of a trial's training time goes to scoring it (issue: evaluation <= 20 % of a trial)."""
CALIBRATION_ITEMS = 4
"""Items per benchmark scored on the base model to measure each benchmark's seconds per item."""
MIN_STUDY_ITEMS = 4
"""Below this many items per benchmark a score says nothing; the study then leaves scoring out."""
ADAPTER_OVERHEAD = 1.25
"""An unmerged LoRA adapter's extra cost per forward pass, allowed for when sizing the subsets."""


def items_within_share(train_seconds: float, seconds_per_item: dict[str, float], share: float = EVAL_SHARE) -> int:
    """Items per benchmark that keep scoring an adapter within `share` of a trial's training time."""
    per_item = sum(seconds_per_item.values()) * ADAPTER_OVERHEAD
    if per_item <= 0:
        return 0
    return int(share * train_seconds / per_item)
