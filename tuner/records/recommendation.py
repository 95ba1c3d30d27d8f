"""A study's trial records and its recommendation, with the objective and data size it holds (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tuner.records.io import RECORD_VERSION, read_fields, without, without_none
from tuner.records.reference import ReferenceSummary
from tuner.records.scores import StudyScores


@dataclass(frozen=True)
class TrialRecord:
    """One trial as written to RUN_DIR/trials/trial_NNNN.json: parameters, outcome, losses, curve and scores."""

    number: int
    state: str
    """Optuna's state name: COMPLETE, PRUNED or FAIL."""
    params: dict[str, Any]
    value: float | None = None
    """The objective (held-out target loss + goal x forgetting rise); None unless complete."""
    reason: str | None = None
    """Why it was pruned or failed."""
    target_loss: float | None = None
    general_loss: float | None = None
    forgetting_rise: float | None = None
    tokens_per_second: float | None = None
    train_seconds: float | None = None
    evaluations: list[list[float]] = field(default_factory=list)
    """[step, target loss, general loss] at each held-out evaluation."""
    infeasible: bool = False
    """Estimated or measured over the memory budget."""
    measured_peak_bytes: int | None = None
    gradient_checkpointing: bool = False
    """Ran with gradient checkpointing: only so did it fit the memory budget."""
    scores: dict[str, float] = field(default_factory=dict)
    """Benchmark name -> score of the adapter."""
    scoring_seconds: float = 0.0
    general_score: float | None = None
    """Mean of HellaSwag, WinoGrande and ARC-Challenge (the paper's forgetting score)."""
    learning_score: float | None = None
    train_curve: list[list[float]] = field(default_factory=list)
    intermediate_values: dict[str, float] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    lora: dict[str, Any] | None = None
    """The adapter the parameters describe (rank, alpha, targets, dropout, variant)."""
    confirm: dict[str, list[list[float]]] | None = None
    """'target' and 'general' -> [summed loss, label tokens] per confirm row, for the best completed trials."""
    slot: int | None = None
    """The trial's place in the study's order, which seeds its training (a retry keeps its original's); None in
    records from before slots were kept (the trial's number then)."""

    def to_json(self) -> dict[str, Any]:
        payload = {"version": RECORD_VERSION, **without(asdict(self), ("lora", "confirm", "slot"))}
        if not self.gradient_checkpointing:  # as every record from before checkpointing was a lever
            payload.pop("gradient_checkpointing")
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrialRecord:
        return cls(**read_fields(cls, payload, "trial record"))

    def diverged(self) -> bool:
        """Stopped by the divergence guard."""
        return str(self.reason or "").startswith("diverged")


@dataclass(frozen=True)
class ObjectiveSummary:
    """The goal, the base model's held-out losses and the chosen trial's objective, losses and forgetting rise, with
    its objective over the confirm rows where the best trials were measured there again (tuner.study.recommend)."""

    goal: float | None = None
    base_target_loss: float | None = None
    base_general_loss: float | None = None
    base_confirm_target_loss: float | None = None
    base_confirm_general_loss: float | None = None
    value: float | None = None
    """The chosen trial's objective (held-out target loss + goal x forgetting rise); None when no trial completed."""
    target_loss: float | None = None
    general_loss: float | None = None
    forgetting_rise: float | None = None
    confirm_value: float | None = None
    confirm_rows: int | None = None
    confirm_within_noise: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return without_none(asdict(self))  # a file holds what was measured: no trial, no trial figures

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ObjectiveSummary:
        return cls(**read_fields(cls, payload, "objective"))


@dataclass(frozen=True)
class DataSize:
    """What a full run's duration is estimated from: the study's training examples, one epoch of them in packed
    tokens and the trials' median training speed."""

    train_examples: int | None = None
    train_tokens: int | None = None
    tokens_per_second: float | None = None
    """None where no trial trained long enough to measure it."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> DataSize:
        return cls(**read_fields(cls, payload, "data size"))


@dataclass(frozen=True)
class Recommendation:
    """RUN_DIR/recommendation.json: the configuration a study recommends, each choice with its evidence."""

    task: str
    model: str
    trial: int | None
    """The trial it comes from; None when no trial completed (the paper's setting)."""
    learning_rate: float
    rank: int
    alpha: float
    targets: str
    target_modules: list[str] | str
    epochs: int
    variant: str = "lora"
    """The LoRA variant (tuner.defaults.VARIANTS); files from before variants existed hold plain LoRA."""
    objective: ObjectiveSummary = field(default_factory=ObjectiveSummary)
    """The goal, the base model's losses and the chosen trial's objective, losses and forgetting rise."""
    trials: dict[str, int] = field(default_factory=dict)
    """Trials by outcome: complete, pruned, fail."""
    evidence: dict[str, str] = field(default_factory=dict)
    """Choice -> the measurement and the paper's finding behind it."""
    runtime: str | None = None
    run_dir: str | None = None
    scores: StudyScores | None = None
    data: DataSize | None = None
    """What a full run's duration is estimated from (None in files from before it was kept)."""
    quantize: str | None = None
    """'nf4': the trials trained QLoRA (4-bit NF4 base weights), and so should the full run; None: 16-bit."""
    gradient_checkpointing: bool = False
    """The pick fits the memory budget only with gradient checkpointing (its trial, and the full run, use it)."""
    reference: ReferenceSummary | None = None
    """`--reference full`: full fine-tuning's runs beside the pick, its best rate, the rate ratio, the held-out loss
    gaps and, where the pick was scored, the best run's scores on the same items with the score gaps
    (tuner.study.reference.reference_summary)."""

    def to_json(self) -> dict[str, Any]:
        payload = {"version": RECORD_VERSION, **asdict(replace(self, scores=None, data=None, reference=None))}
        payload["objective"] = self.objective.to_json()
        payload["scores"] = self.scores.to_json() if self.scores is not None else None
        payload["data"] = self.data.to_json() if self.data is not None else None
        payload["reference"] = self.reference.to_json() if self.reference is not None else None
        payload = without(payload, ("data", "reference"))  # files from before each was kept
        if self.variant == "lora":  # plain LoRA, as every file from before variants existed
            payload.pop("variant")
        if self.quantize is None:  # 16-bit, as every file from before QLoRA
            payload.pop("quantize")
        if not self.gradient_checkpointing:  # as every file from before checkpointing was a lever
            payload.pop("gradient_checkpointing")
        return payload

    def headline(self) -> str:
        """The recommendation in one line, short enough for optuna-dashboard to show whole (it cuts values at 1,024
        characters)."""
        source = f"trial {self.trial}" if self.trial is not None else "the paper's setting (no trial completed)"
        variant = f" ({self.variant})" if self.variant != "lora" else ""
        parts = [
            f"{self.task} on {self.model}: {source}: lr {self.learning_rate:.3g}, rank {self.rank}, "
            f"alpha {self.alpha:g}, targets {self.targets}{variant}, {self.epochs} epochs"
        ]
        objective = self.objective
        if objective.target_loss is not None and objective.base_target_loss is not None:
            parts.append(f"held-out loss {objective.target_loss:.4f} (base {objective.base_target_loss:.4f})")
        pick = self.scores.pick if self.scores is not None else None
        for figure in (pick.general, pick.learning) if pick is not None else ():
            if figure is not None:
                parts.append(f"{figure.benchmark or 'general mean'} {figure.score:.3f} (base {figure.base:.3f})")
        if self.trials:
            parts.append("trials: " + ", ".join(f"{count} {state}" for state, count in self.trials.items()))
        return "; ".join(parts)[:1000]

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Recommendation:
        fields_ = read_fields(cls, payload, "recommendation")
        scores, data, reference = (fields_.get(name) for name in ("scores", "data", "reference"))
        fields_["scores"] = StudyScores.from_json(scores) if isinstance(scores, dict) else None
        fields_["data"] = DataSize.from_json(data) if isinstance(data, dict) else None
        fields_["reference"] = ReferenceSummary.from_json(reference) if isinstance(reference, dict) else None
        fields_["objective"] = ObjectiveSummary.from_json(fields_.get("objective") or {})
        return cls(**fields_)
