"""What crosses layers and lands on disk, as typed records with one JSON round trip each (pure).

Each record writes the keys its file has always held, plus `version`; `from_json` reads files written before
versions existed (no `version` key) the same way, and refuses a version newer than it knows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

RECORD_VERSION = 1
"""Bumped when a record's meaning changes; readers convert older versions."""

_Record = TypeVar("_Record")


def _read(cls: type[_Record], payload: dict[str, Any], what: str) -> dict[str, Any]:
    """The payload's known fields; ValueError for a version newer than this code writes."""
    if not isinstance(payload, dict):
        raise ValueError(f"a {what} is a JSON object, got {type(payload).__name__}")
    version = payload.get("version", RECORD_VERSION)
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise ValueError(f"{what} version {version!r} is newer than this advisor reads ({RECORD_VERSION})")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return {key: value for key, value in payload.items() if key in known}


def _without(payload: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    """The payload without the optional keys that are None (files leave them out)."""
    return {key: value for key, value in payload.items() if not (key in optional and value is None)}


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
        return {"version": RECORD_VERSION, **_without(asdict(self), ("lora", "confirm", "slot"))}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrialRecord:
        return cls(**_read(cls, payload, "trial record"))

    def diverged(self) -> bool:
        """Stopped by the divergence guard."""
        return str(self.reason or "").startswith("diverged")


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
        return cls(**_read(cls, payload, "score row"))


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
    points: list[dict[str, Any]] | None = None
    stderr: dict[str, dict[str, float]] | None = None
    """'base' or a trial number (as text) -> benchmark -> the score's standard error."""
    items: int | None = None
    """Items per benchmark that were scored."""
    seconds: dict[str, float] | None = None
    """Scoring the pick after the search: 'estimated' before it started and 'measured'."""
    pick: dict[str, Any] | None = None
    """The recommended trial's learning and general scores against the base model's, each with its standard error,
    and the changes with theirs (see study_summary.pick_summary)."""
    paired_stderr: dict[str, dict[str, float]] | None = None
    """A trial number (as text) -> benchmark -> the standard error of its change against the base model, from the
    per-item differences on the same items (paired); only where both kept their item scores."""

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        if self.base is None:  # scoring did not run: only the plan, and why
            return _without({"plan": self.plan, "note": self.note}, ("note",))
        optional = ("note", "pareto_front", "plot", "points", "stderr", "items", "seconds", "pick", "paired_stderr")
        return _without(payload, optional)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> StudyScores:
        fields_ = _read(cls, payload, "study scores")
        if fields_.get("trials") is not None:
            fields_["trials"] = {str(k): v for k, v in fields_["trials"].items()}
        return cls(**fields_)


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
    objective: dict[str, Any] = field(default_factory=dict)
    """The goal, the base model's losses and the chosen trial's objective, losses and forgetting rise."""
    trials: dict[str, int] = field(default_factory=dict)
    """Trials by outcome: complete, pruned, fail."""
    evidence: dict[str, str] = field(default_factory=dict)
    """Choice -> the measurement and the paper's finding behind it."""
    runtime: str | None = None
    run_dir: str | None = None
    scores: StudyScores | None = None
    data: dict[str, Any] | None = None
    """What a full run's duration is estimated from: the study's training examples (train_examples), one epoch
    of them in packed tokens (train_tokens) and the trials' median training speed (tokens_per_second)."""
    reference: dict[str, Any] | None = None
    """`--reference full`: full fine-tuning's runs beside the pick, its best rate, the rate ratio, the held-out loss
    gaps and, where the pick was scored, the best run's scores on the same items with the score gaps
    (tuner.study.reference.reference_summary)."""

    def to_json(self) -> dict[str, Any]:
        payload = {"version": RECORD_VERSION, **asdict(self)}
        payload["scores"] = self.scores.to_json() if self.scores is not None else None
        if self.data is None:  # files from before the data size was kept
            payload.pop("data")
        if self.reference is None:
            payload.pop("reference")
        if self.variant == "lora":  # plain LoRA, as every file from before variants existed
            payload.pop("variant")
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
        objective = self.objective or {}
        if objective.get("target_loss") is not None and objective.get("base_target_loss") is not None:
            parts.append(f"held-out loss {objective['target_loss']:.4f} (base {objective['base_target_loss']:.4f})")
        pick = (self.scores.pick if self.scores is not None else None) or {}
        for name in ("general", "learning"):
            figure = pick.get(name)
            if figure and figure.get("score") is not None and figure.get("base") is not None:
                label = figure.get("benchmark", "general mean")
                parts.append(f"{label} {figure['score']:.3f} (base {figure['base']:.3f})")
        if self.trials:
            parts.append("trials: " + ", ".join(f"{count} {state}" for state, count in self.trials.items()))
        return "; ".join(parts)[:1000]

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Recommendation:
        fields_ = _read(cls, payload, "recommendation")
        scores = fields_.get("scores")
        fields_["scores"] = StudyScores.from_json(scores) if isinstance(scores, dict) else None
        return cls(**fields_)


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
        payload = _without({"version": RECORD_VERSION, **asdict(self)}, ("model_dir", "change_noise"))
        if self.scores is None:  # unscored runs leave the score keys out
            for key in ("scores", "learning_benchmark", "change", "plot"):
                payload.pop(key)
            payload.pop("change_noise", None)
        else:
            payload["scores"] = {label: row.to_json() for label, row in self.scores.items()}
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunReport:
        fields_ = _read(cls, payload, "run report")
        if fields_.get("scores") is not None:
            fields_["scores"] = {label: ScoreRow.from_json(row) for label, row in fields_["scores"].items()}
        return cls(**fields_)
