"""What a running study tells its display (pure): the CLI renders these with rich, the app as messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tuner.records import Recommendation, RunReport, TrialRecord


@dataclass(frozen=True)
class StudyStarted:
    total_trials: int
    finished_trials: int
    run_dir: str
    budget: str | None = None
    """The study's budget and what is spent of it, where it has one."""
    spent_share: float | None = None
    """The share of the budget spent (1 = all), where it has one."""


@dataclass(frozen=True)
class Stage:
    """A preparation stage (loading the model, tokenising, scoring the base model)."""

    message: str


@dataclass(frozen=True)
class DataFound:
    """What the task's data is, said once before anything trains (tuner.data.preview.summary_line)."""

    summary: str


@dataclass(frozen=True)
class TrialStarted:
    number: int
    index: int
    """1-based position among the study's trials."""
    total: int
    """The study's trial count (0 when its budget, not a count, ends it)."""
    steps: int
    params: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialProgress:
    number: int
    step: int
    steps: int
    loss: float
    tokens_per_second: float


@dataclass(frozen=True)
class TrialEvaluated:
    number: int
    step: int
    target_loss: float
    general_loss: float
    objective: float


@dataclass(frozen=True)
class TrialFinished:
    number: int
    state: str
    """'COMPLETE', 'PRUNED' or 'FAIL'."""
    value: float | None
    reason: str | None
    seconds: float
    spent: str | None = None
    """The study's budget used and left, where it has one."""
    spent_share: float | None = None
    """The share of the budget spent (1 = all), where it has one."""


@dataclass(frozen=True)
class TrialScored:
    """A surviving trial's benchmark scores (the headline figure of each), and its general and learning scores."""

    number: int
    scores: dict[str, float]
    general: float | None
    learning: float | None


@dataclass(frozen=True)
class StudyFinished:
    recommendation: Recommendation
    trials: list[TrialRecord]


Event = (
    StudyStarted
    | Stage
    | DataFound
    | TrialStarted
    | TrialProgress
    | TrialEvaluated
    | TrialScored
    | TrialFinished
    | StudyFinished
)
Reporter = Callable[[Event], None]


@dataclass(frozen=True)
class TrainStarted:
    """The full run begins, or resumes from a checkpoint (start_step > 0)."""

    total_steps: int
    epochs: int
    start_step: int
    out_dir: str


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total_steps: int
    epoch: float
    loss: float
    tokens_per_second: float


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str


@dataclass(frozen=True)
class EpochEvaluated:
    """Held-out losses at the end of an epoch."""

    epoch: int
    step: int
    target_loss: float
    general_loss: float


@dataclass(frozen=True)
class RunScored:
    """Benchmark scores of the base model or of the trained adapter (after an epoch, or at the end)."""

    label: str
    scores: dict[str, float]
    general: float | None
    learning: float | None


@dataclass(frozen=True)
class TrainFinished:
    report: RunReport


TrainEvent = (
    Stage | DataFound | TrainStarted | TrainProgress | CheckpointSaved | EpochEvaluated | RunScored | TrainFinished
)
TrainReporter = Callable[[TrainEvent], None]


def ignore(event: Event | TrainEvent) -> None:
    """A reporter that shows nothing."""
