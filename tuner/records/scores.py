"""The scores a study writes, as typed records with one JSON round trip each (pure): a score against the base
model's, the pick's summary, a point on the learning-forgetting plane, one model's scores, and the scoring stage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from tuner.records.io import read_fields, without


@dataclass(frozen=True)
class ScoreChange:
    """A score against a baseline's (the base model's, or full fine-tuning's), both with their standard errors, the
    change with its own (paired over the items where both kept theirs) and whether it is within noise
    (tuner.scoring.benchmarks.roles.score_change)."""

    score: float
    stderr: float | None
    base: float
    base_stderr: float | None
    change: float
    change_stderr: float | None
    paired: bool
    within_noise: bool
    benchmark: str | None = None
    """The learning benchmark the score is on (GSM8K, HumanEval...); None for the general mean."""

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        benchmark = payload.pop("benchmark")
        return {"benchmark": benchmark, **payload} if benchmark is not None else payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ScoreChange:
        return cls(**read_fields(cls, payload, "score change"))


@dataclass(frozen=True)
class PickSummary:
    """The recommended trial's learning and general scores against the base model's (tuner.study.summary)."""

    trial: int
    items: int | None
    """Items per benchmark they were scored on."""
    paired: bool
    """The changes' errors come from the per-item differences (both models kept their items)."""
    general: ScoreChange | None = None
    learning: ScoreChange | None = None

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"trial": self.trial, "items": self.items, "paired": self.paired}
        for name, figure in (("general", self.general), ("learning", self.learning)):
            if figure is not None:
                payload[name] = figure.to_json()
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PickSummary:
        fields_ = read_fields(cls, payload, "pick summary")
        for name in ("general", "learning"):
            figure = fields_.get(name)
            fields_[name] = ScoreChange.from_json(figure) if isinstance(figure, dict) else None
        return cls(**fields_)


@dataclass(frozen=True)
class ScorePoint:
    """One model on the learning-forgetting plane: the base model, a trained adapter, or full fine-tuning."""

    label: str
    """What the point is called on the plot, e.g. 'base' or 'trial 3'."""
    general: float
    """x: mean accuracy on HellaSwag, WinoGrande and ARC-Challenge (higher = forgot less)."""
    learning: float
    """y: the target-task score, e.g. GSM8K accuracy or HumanEval pass@1 (higher = learned more)."""
    is_base: bool = False
    """True for the base model, which is drawn apart and never on the Pareto front."""
    is_reference: bool = False
    """True for full fine-tuning (the reference LoRA is measured against): drawn apart, never on LoRA's front."""

    def __post_init__(self) -> None:
        for name, value in (("general", self.general), ("learning", self.learning)):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} score of {self.label!r} must be a finite accuracy in [0, 1], got {value}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ScorePoint:
        return cls(**read_fields(cls, payload, "score point"))


@dataclass(frozen=True)
class ScoreRow:
    """One model's scores: each benchmark, the forgetting mean and the learning benchmark's score."""

    scores: dict[str, float]
    general: float | None
    learning: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ScoreRow:
        return cls(**read_fields(cls, payload, "score row"))


@dataclass(frozen=True)
class StudyScores:
    """A study's scoring stage: its plan, the base model's scores, each scored trial's, the Pareto front, the plot."""

    plan: dict[str, Any] | None = None
    """Items per benchmark and why (or why scoring was left out)."""
    base: dict[str, float] | None = None
    base_general: float | None = None
    base_learning: float | None = None
    learning_benchmark: str | None = None
    trials: dict[str, dict[str, float]] | None = None
    """Trial number (as text) -> benchmark -> score."""
    note: str | None = None
    pareto_front: list[dict[str, Any]] | None = None
    plot: str | None = None
    points: list[ScorePoint] | None = None
    """The base model, the scored trials and full fine-tuning's best run on the learning-forgetting plane."""
    stderr: dict[str, dict[str, float]] | None = None
    """'base' or a trial number (as text) -> benchmark -> the score's standard error."""
    items: int | None = None
    """Items per benchmark that were scored."""
    seconds: dict[str, float] | None = None
    """Scoring the pick after the search: 'estimated' before it started and 'measured'."""
    pick: PickSummary | None = None
    """The recommended trial's learning and general scores against the base model's, each with its standard error,
    and the changes with theirs (see tuner.study.summary.pick_summary)."""
    paired_stderr: dict[str, dict[str, float]] | None = None
    """A trial number (as text) -> benchmark -> the standard error of its change against the base model, from the
    per-item differences on the same items (paired); only where both kept their item scores."""

    def to_json(self) -> dict[str, Any]:
        if self.base is None:  # scoring did not run: only the plan, and why
            return without({"plan": self.plan, "note": self.note}, ("note",))
        payload = asdict(replace(self, points=None, pick=None))
        payload["points"] = [point.to_json() for point in self.points] if self.points is not None else None
        payload["pick"] = self.pick.to_json() if self.pick is not None else None
        optional = ("note", "pareto_front", "plot", "points", "stderr", "items", "seconds", "pick", "paired_stderr")
        return without(payload, optional)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> StudyScores:
        fields_ = read_fields(cls, payload, "study scores")
        if fields_.get("trials") is not None:
            fields_["trials"] = {str(k): v for k, v in fields_["trials"].items()}
        if fields_.get("points") is not None:
            fields_["points"] = [ScorePoint.from_json(point) for point in fields_["points"]]
        if isinstance(fields_.get("pick"), dict):
            fields_["pick"] = PickSummary.from_json(fields_["pick"])
        return cls(**fields_)
