"""Full fine-tuning beside a study's pick (`--reference full`), as the recommendation writes it: typed records with
one JSON round trip each (pure). Built by tuner.study.reference.reference_summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tuner.records.io import read_fields, without_none
from tuner.records.scores import ScoreChange


@dataclass(frozen=True)
class ReferenceRun:
    """One full fine-tuning run as the summary keeps it: its rate, final held-out losses and why it stopped."""

    rate: float
    target_loss: float | None = None
    general_loss: float | None = None
    stopped: str | None = None
    """Why it stopped early (diverged, out of memory); None when it finished."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ReferenceRun:
        return cls(**read_fields(cls, payload, "reference run"))


@dataclass(frozen=True)
class ConfirmGap:
    """LoRA's and full fine-tuning's mean loss over the confirm rows, and the gap LoRA - full paired over them."""

    lora: float
    full: float
    gap: float
    stderr: float
    rows: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ConfirmGap:
        return cls(**read_fields(cls, payload, "confirm gap"))


@dataclass(frozen=True)
class LossGap:
    """A held-out loss (target or general) of LoRA's pick and full fine-tuning's best run, and LoRA - full."""

    lora: float | None
    full: float | None
    gap: float | None = None
    """None where LoRA's loss is not known."""
    confirm: ConfirmGap | None = None
    """The same over the confirm rows, paired, where both were measured there."""

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"lora": self.lora, "full": self.full}
        if self.gap is not None:
            payload["gap"] = self.gap
        if self.confirm is not None:
            payload["confirm"] = self.confirm.to_json()
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> LossGap:
        fields_ = read_fields(cls, payload, "loss gap")
        confirm = fields_.get("confirm")
        fields_["confirm"] = ConfirmGap.from_json(confirm) if isinstance(confirm, dict) else None
        return cls(**fields_)


@dataclass(frozen=True)
class ScoreGap:
    """A score (general mean or learning) of full fine-tuning against the base model's, LoRA's, and LoRA - full with
    its standard error (paired over the items where both kept theirs) and whether it is within noise."""

    full: ScoreChange
    lora: float
    lora_stderr: float | None
    gap: float
    stderr: float | None
    paired: bool
    within_noise: bool
    benchmark: str | None = None
    """The learning benchmark; None for the general mean."""

    def to_json(self) -> dict[str, Any]:
        payload = {**asdict(self), "full": self.full.to_json()}
        benchmark = payload.pop("benchmark")
        return {"benchmark": benchmark, **payload} if benchmark is not None else payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ScoreGap:
        fields_ = read_fields(cls, payload, "score gap")
        fields_["full"] = ScoreChange.from_json(fields_["full"])
        return cls(**fields_)


@dataclass(frozen=True)
class ReferenceSummary:
    """Full fine-tuning's runs beside the pick, its best rate, the rate ratio, the held-out loss gaps and, where the
    pick was scored, the best run's scores on the same items with the score gaps."""

    runs: dict[str, ReferenceRun]
    """Rate (as text, tuner.study.reference.rate_key) -> the run."""
    best_rate: float
    lora_rate: float
    rate_ratio: float
    """LoRA's rate / full fine-tuning's best (the paper's finding: about 10x)."""
    target_loss: LossGap
    general_loss: LossGap
    method: str = "full"
    score_items: int | None = None
    """Items per benchmark the best run was scored on (the pick's); None where it was not scored."""
    general_score: ScoreGap | None = None
    learning_score: ScoreGap | None = None

    def to_json(self) -> dict[str, Any]:
        payload = {
            "method": self.method,
            "runs": {key: run.to_json() for key, run in self.runs.items()},
            "best_rate": self.best_rate,
            "lora_rate": self.lora_rate,
            "rate_ratio": self.rate_ratio,
            "target_loss": self.target_loss.to_json(),
            "general_loss": self.general_loss.to_json(),
            "score_items": self.score_items,
            "general_score": self.general_score.to_json() if self.general_score is not None else None,
            "learning_score": self.learning_score.to_json() if self.learning_score is not None else None,
        }
        return without_none(payload)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ReferenceSummary:
        fields_ = read_fields(cls, payload, "reference summary")
        fields_["runs"] = {key: ReferenceRun.from_json(run) for key, run in fields_["runs"].items()}
        for name in ("target_loss", "general_loss"):
            fields_[name] = LossGap.from_json(fields_[name])
        for name in ("general_score", "learning_score"):
            figure = fields_.get(name)
            fields_[name] = ScoreGap.from_json(figure) if isinstance(figure, dict) else None
        return cls(**fields_)
