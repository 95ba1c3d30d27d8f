"""A full run's report, RUN_DIR/report.json (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tuner.records.io import RECORD_VERSION, read_fields, without
from tuner.records.scores import ScoreRow


@dataclass(frozen=True)
class RunReport:
    """RUN_DIR/report.json of a full run: its settings, training history, scores against the base and the change."""

    settings: dict[str, Any]
    """The run's identity (RunSettings.identity(): model, data, adapter and recipe, flat)."""
    runtime: str
    out_dir: str
    adapter: str | None
    """The trained adapter (PEFT format); None for full fine-tuning, whose whole model is in `model_dir`."""
    merged: str | None
    training: dict[str, Any]
    """Steps, epochs, rows, examples, tokens and the held-out losses after each epoch."""
    scoring: dict[str, Any] | None
    """The EvalSettings the scores were taken with (None: not scored)."""
    scores: dict[str, ScoreRow] | None = None
    """'base', 'trained' and 'epoch N' -> their scores."""
    learning_benchmark: str | None = None
    change: dict[str, float | None] | None = None
    """Trained minus base for 'general' and 'learning'."""
    change_noise: dict[str, dict[str, Any]] | None = None
    """'general' and 'learning' -> the scores with their standard errors, the change's (paired where both models
    kept their items) and whether it is within noise (train_report.change_noise)."""
    plot: str | None = None
    model_dir: str | None = None
    """Full fine-tuning: the trained model (a from_pretrained directory)."""

    def to_json(self) -> dict[str, Any]:
        payload = without({"version": RECORD_VERSION, **asdict(self)}, ("model_dir", "change_noise"))
        if self.scores is None:  # unscored runs leave the score keys out
            for key in ("scores", "learning_benchmark", "change", "plot"):
                payload.pop(key)
            payload.pop("change_noise", None)
        else:
            payload["scores"] = {label: row.to_json() for label, row in self.scores.items()}
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunReport:
        fields_ = read_fields(cls, payload, "run report")
        if fields_.get("scores") is not None:
            fields_["scores"] = {label: ScoreRow.from_json(row) for label, row in fields_["scores"].items()}
        return cls(**fields_)
