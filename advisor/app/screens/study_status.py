"""The live study's status line (pure): what runs now by the table's numbering, the budget spent counting the running
trial's tokens as they train, the time elapsed across stops and resumes, and the time left."""

from __future__ import annotations

from dataclasses import dataclass

from tuner.settings import StudySettings
from tuner.study.budget import Spent, format_duration


def trial_share(settings: StudySettings, step: int, seconds: float) -> float:
    """A running trial's share of the study's budget: its `step` steps' tokens, or its `seconds` (0: no budget)."""
    spend = settings.search_budget
    if spend is None:
        return 0.0
    return spend.spent_share(Spent(step * settings.budget.tokens_per_step(), seconds))


@dataclass(frozen=True)
class Progress:
    """Where a study run in the app stands."""

    budgeted: bool
    """The study has a budget (its share spent is shown), not a trial count."""
    current_trial: int | None
    """The trial training now (the table's number); None between trials."""
    stage: str | None
    """What runs between trial steps (loading, the range test, scoring)."""
    done: int
    total: int
    resumed_from: int
    """Trials ended before this start: the time left counts what this start did."""
    share: float
    """The budget's share spent, the running trial's tokens so far included."""
    resumed_share: float

    def phase(self) -> str:
        """What runs now: the trial by the table's numbering, or between trials the stage."""
        return f"trial {self.current_trial}" if self.current_trial is not None else (self.stage or "setting up")

    def seconds_left(self, ran: float) -> float | None:
        """The time left at the rate of this start so far (`ran` seconds); None before it has a rate."""
        if self.budgeted:
            gained = self.share - self.resumed_share
            return ran / gained * (1 - self.share) if gained > 0 else None
        finished = self.done - self.resumed_from
        return ran / finished * (self.total - self.done) if finished > 0 else None

    def line(self, state: str, ran: float, elapsed: float) -> str:
        """The status line: state, phase, what ended, the budget spent, time elapsed and left, and the stage."""
        if self.budgeted:
            ended = f"{self.done} trial{'s' * (self.done != 1)} ended, {self.share:.0%} of the budget spent"
        else:
            ended = f"{self.done}/{self.total} trials ended"
        left = self.seconds_left(ran)
        eta = ", time left known after a trial"
        if left is not None:
            eta = f", about {format_duration(left)} left" if left >= 60 else ", under a minute left"
        doing = f"; {self.stage}" if self.stage and self.current_trial is not None else ""
        return f"{state}: {self.phase()}; {ended}, {elapsed / 60:.1f} min elapsed{eta}{doing}"
