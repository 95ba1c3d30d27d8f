"""The choice made with noise in mind: the best trials re-measured on confirm sets larger than the rows they were
pruned on, compared on the same rows (paired), and the top two called within noise when they are (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tuner.defaults import CONFIRM_TRIALS
from tuner.records import TrialRecord
from tuner.scoring.benchmarks.roles import NOISE_SE
from tuner.study.objective import objective_value

RowLosses = Sequence[Sequence[float]]
"""[summed loss, label tokens] per packed row."""


def mean_loss(rows: RowLosses) -> float:
    """Loss per label token over the rows."""
    tokens = sum(row[1] for row in rows)
    return sum(row[0] for row in rows) / tokens if tokens else float("nan")


def paired_difference(a: RowLosses, b: RowLosses) -> tuple[float, float]:
    """a's loss per token minus b's on the same rows, and its standard error over the rows (the ratio
    estimator's: each row's difference weighed by its label tokens)."""
    if len(a) != len(b):
        raise ValueError(f"paired rows differ in number: {len(a)} and {len(b)}")
    tokens = sum(row[1] for row in a)
    if not tokens:
        return float("nan"), float("nan")
    diffs = [(x[0] - y[0], x[1]) for x, y in zip(a, b, strict=True)]
    mean = sum(d for d, _ in diffs) / tokens
    if len(diffs) < 2:
        return mean, float("inf")
    residuals = [d - mean * n for d, n in diffs]
    variance = sum(r * r for r in residuals) / (len(diffs) - 1)
    return mean, math.sqrt(len(diffs) * variance) / tokens


@dataclass(frozen=True)
class Remeasured:
    """One completed trial's losses on the confirm sets."""

    number: int
    target: RowLosses
    general: RowLosses

    def objective(self, base_general_loss: float, goal: float) -> float:
        """The study's objective on the confirm sets (the base model's general loss measured there too)."""
        return objective_value(mean_loss(self.target), mean_loss(self.general), base_general_loss, goal)

    def difference(self, other: Remeasured, goal: float) -> tuple[float, float]:
        """This trial's objective minus the other's, paired row by row, with its standard error."""
        target, target_se = paired_difference(self.target, other.target)
        if goal == 0:
            return target, target_se
        general, general_se = paired_difference(self.general, other.general)
        return target + goal * general, math.hypot(target_se, goal * general_se)


def worth_remeasuring(value: float, completed: Sequence[float], top: int = CONFIRM_TRIALS) -> bool:
    """Whether a trial that just completed with objective `value` is among the best `top` of the completed ones
    (`completed` holds the others): a trial outside them now can never enter them later."""
    better = sum(other < value for other in completed)
    return better < top


@dataclass(frozen=True)
class Confirmation:
    """The pick among the re-measured trials, and how far it leads the runner-up."""

    pick: int
    """The trial with the lowest objective on the confirm sets."""
    objectives: dict[int, float]
    """Trial -> objective on the confirm sets, best first."""
    searched_best: int
    """The trial with the lowest objective on the rows the search ranked by."""
    rows: int
    """Target rows on the confirm set."""
    lead: float | None = None
    """The runner-up's objective minus the pick's, paired (None with one trial re-measured)."""
    lead_se: float | None = None

    @property
    def runner_up(self) -> int | None:
        return list(self.objectives)[1] if len(self.objectives) > 1 else None

    def within_noise(self) -> bool:
        """The pick leads the runner-up by less than NOISE_SE standard errors."""
        return self.lead is not None and self.lead_se is not None and self.lead < NOISE_SE * self.lead_se

    def describe(self, pruned_rows: int) -> str:
        """The choice in sentences for the advice."""
        ranked = ", ".join(f"trial {number} {value:.4f}" for number, value in self.objectives.items())
        text = (
            f"The best {len(self.objectives)} completed trials were re-measured on {self.rows} held-out rows that no "
            f"trial was ranked by ({pruned_rows} rows ranked them): {ranked}."
        )
        if self.pick != self.searched_best:
            text += f" Trial {self.searched_best} led on the ranking rows; on the larger set trial {self.pick} leads."
        if self.lead is None or self.lead_se is None:
            return text
        lead = f"trial {self.pick} leads trial {self.runner_up} by {self.lead:.4f} ± {self.lead_se:.4f} (paired)"
        if self.within_noise():
            return f"{text} Within noise: {lead}, under {NOISE_SE:g} standard errors; either would do."
        return f"{text} Beyond noise: {lead}, {self.lead / self.lead_se:.1f} standard errors."


def confirm_choice(
    complete: Sequence[TrialRecord], goal: float, base_general_loss: float | None
) -> Confirmation | None:
    """The pick among the best completed trials that were re-measured (None when none was, or the base model's
    general loss on the confirm set is unknown)."""
    if not complete or base_general_loss is None:
        return None
    ranked = sorted(complete, key=lambda t: float(t.value))  # type: ignore[arg-type]
    measured = [
        Remeasured(t.number, t.confirm["target"], t.confirm["general"])
        for t in ranked[:CONFIRM_TRIALS]
        if t.confirm is not None
    ]
    if not measured:
        return None
    by_objective = sorted(measured, key=lambda m: m.objective(base_general_loss, goal))
    pick = by_objective[0]
    objectives = {m.number: m.objective(base_general_loss, goal) for m in by_objective}
    lead, lead_se = by_objective[1].difference(pick, goal) if len(by_objective) > 1 else (None, None)
    return Confirmation(pick.number, objectives, ranked[0].number, len(pick.target), lead, lead_se)
