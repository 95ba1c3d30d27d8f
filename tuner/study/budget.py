"""The study's budget in training tokens or wall time, and what the study has spent of it (pure).

Every trial's training counts, pruned or finished, and so does the learning-rate range test: a pruned
configuration costs only the steps it ran.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOKEN_UNITS = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
"""Multipliers of a token budget ('M' is millions; minutes are 'min')."""
TIME_UNITS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hr": 3600}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(k|K|M|G|sec|s|min|hr|h)?\s*(tokens?)?\s*$")


@dataclass(frozen=True)
class StudyBudget:
    """What the whole study may spend: training tokens, or seconds of trial time."""

    tokens: int | None = None
    """Training tokens of all trials and the range test together."""
    seconds: float | None = None
    """Seconds of trial and range-test time together (model loading and set-up do not count)."""

    def __post_init__(self) -> None:
        if (self.tokens is None) == (self.seconds is None):
            raise ValueError("a study budget is either training tokens or seconds, not both or neither")
        if (self.tokens is not None and self.tokens < 1) or (self.seconds is not None and self.seconds <= 0):
            raise ValueError(f"a study budget must be positive, got {self.describe()}")

    @classmethod
    def parse(cls, text: str, option: str = "--budget") -> StudyBudget:
        """A budget from '200000', '200k' or '1.5M tokens' (training tokens), or '90s', '30min', '2h' (time);
        `option` names where it was given, in the error."""
        match = _BUDGET.match(text)
        if match is not None:
            number, unit, token_word = float(match.group(1)), match.group(2) or "", match.group(3)
            if unit in TOKEN_UNITS and (unit or number == int(number)) and number > 0:
                return cls(tokens=round(number * TOKEN_UNITS[unit]))
            if unit in TIME_UNITS and not token_word and number > 0:
                return cls(seconds=number * TIME_UNITS[unit])
        raise ValueError(
            f"{option} {text!r}: give positive training tokens (200000, 200k, 1.5M tokens) or time (90s, 30min, 2h)"
        )

    def describe(self) -> str:
        if self.tokens is not None:
            return f"{self.tokens:,} training tokens"
        return f"{self.seconds:g} s"

    def spent_share(self, spent: Spent) -> float:
        """How much of the budget is spent (1 = all)."""
        if self.tokens is not None:
            return spent.tokens / self.tokens
        return spent.seconds / float(self.seconds)  # type: ignore[arg-type]

    def allows(self, spent: Spent, next_tokens: int, next_seconds: float) -> bool:
        """Whether the next piece of work (its first rung) still fits."""
        if self.tokens is not None:
            return spent.tokens + next_tokens <= self.tokens
        return spent.seconds + next_seconds <= float(self.seconds)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "seconds": self.seconds}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> StudyBudget:
        return cls(tokens=payload.get("tokens"), seconds=payload.get("seconds"))


@dataclass(frozen=True)
class Spent:
    """Training tokens and seconds spent so far."""

    tokens: int = 0
    seconds: float = 0.0

    def __add__(self, other: Spent) -> Spent:
        return Spent(self.tokens + other.tokens, self.seconds + other.seconds)


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: '40 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def total_spent(trials: Iterable[tuple[int, float]], range_test: tuple[int, float] | None = None) -> Spent:
    """The sum of (tokens, seconds) over trials and the range test."""
    spent = Spent(*range_test) if range_test is not None else Spent()
    for tokens, seconds in trials:
        spent = spent + Spent(tokens, seconds)
    return spent


def describe_spent(budget: StudyBudget, spent: Spent) -> str:
    """'41,000 of 66,000 training tokens used, 25,000 left' (or seconds)."""
    if budget.tokens is not None:
        left = max(budget.tokens - spent.tokens, 0)
        return f"{spent.tokens:,} of {budget.tokens:,} training tokens used, {left:,} left"
    left_s = max(float(budget.seconds) - spent.seconds, 0.0)  # type: ignore[arg-type]
    return f"{spent.seconds:.0f} of {budget.seconds:g} s used, {left_s:.0f} s left"
