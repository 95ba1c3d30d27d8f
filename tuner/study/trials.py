"""A trial in the study's storage: its attributes, typed (`TrialState`: what it measured, and why it was pruned or
failed), its record as RUN_DIR/trials/ holds it, what it cost, and which trials ended."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tuner.records import TrialRecord
from tuner.study.retry import INTERRUPTED, trial_slot
from tuner.study.space import lora_from_params

if TYPE_CHECKING:
    import optuna


class TrialState:
    """A trial's attributes, typed: what it measured, and why it was pruned or failed."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def pruned(self, reason: str, infeasible: bool = False) -> None:
        if infeasible:
            self.trial.set_user_attr("infeasible", True)
        self.trial.set_user_attr("pruned_reason", reason)

    def failed(self, reason: str, measured_peak_bytes: int | None) -> None:
        """Out of memory: infeasible, with the peak measured where the device reports one."""
        self.trial.set_user_attr("infeasible", True)
        self.trial.set_user_attr("measured_peak_bytes", measured_peak_bytes)
        self.trial.set_user_attr("failed_reason", reason)

    def trained(
        self,
        train_curve: list[list[float]],
        evaluations: list[list[float]],
        tokens_per_second: float,
        train_seconds: float,
    ) -> None:
        self.trial.set_user_attr("train_curve", train_curve)
        self.trial.set_user_attr("evaluations", evaluations)
        self.trial.set_user_attr("tokens_per_second", tokens_per_second)
        self.trial.set_user_attr("train_seconds", train_seconds)

    def checkpointed(self) -> None:
        """The trial runs with gradient checkpointing: only so does it fit the memory budget."""
        self.trial.set_user_attr("gradient_checkpointing", True)

    def losses(self, target_loss: float, general_loss: float, forgetting_rise: float) -> None:
        self.trial.set_user_attr("target_loss", target_loss)
        self.trial.set_user_attr("general_loss", general_loss)
        self.trial.set_user_attr("forgetting_rise", forgetting_rise)

    def remeasured(self, target: list[list[float]], general: list[list[float]]) -> None:
        """The trial's per-row losses on the confirm sets (target and general)."""
        self.trial.set_user_attr("confirm", {"target": target, "general": general})

    def scored(
        self, scores: dict[str, dict[str, Any]], general_score: float | None, learning_score: float | None
    ) -> None:
        self.trial.set_user_attr("scores", scores)
        self.trial.set_user_attr("general_score", general_score)
        self.trial.set_user_attr("learning_score", learning_score)


def trial_scores(study: optuna.Study, number: int) -> dict[str, dict[str, Any]] | None:
    """A trial's benchmark scores as it stored them (benchmark -> TaskScore as a dict, item scores included), or
    None where it was not scored."""
    return study.get_trials(deepcopy=False)[number].user_attrs.get("scores") or None


def running_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials some worker is running now (or was, until its heartbeat's grace period ends)."""
    from optuna.trial import TrialState as OptunaState

    return study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,))


def is_interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """Failed without a recorded reason: its process was killed."""
    from optuna.trial import TrialState as OptunaState

    return trial.state == OptunaState.FAIL and "failed_reason" not in trial.user_attrs


def trial_record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """One trial as written to RUN_DIR/trials/: parameters, outcome, losses and curve."""
    attrs = trial.user_attrs
    scores = attrs.get("scores", {})
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        value=trial.value,
        reason=attrs.get("pruned_reason")
        or attrs.get("failed_reason")
        or (INTERRUPTED if is_interrupted(trial) else None),
        target_loss=attrs.get("target_loss"),
        general_loss=attrs.get("general_loss"),
        forgetting_rise=attrs.get("forgetting_rise"),
        tokens_per_second=attrs.get("tokens_per_second"),
        train_seconds=attrs.get("train_seconds"),
        evaluations=attrs.get("evaluations", []),
        infeasible=bool(attrs.get("infeasible", False)),
        measured_peak_bytes=attrs.get("measured_peak_bytes"),
        gradient_checkpointing=bool(attrs.get("gradient_checkpointing", False)),
        scores={name: score["score"] for name, score in scores.items()},
        scoring_seconds=round(sum(score["seconds"] for score in scores.values()), 2),
        general_score=attrs.get("general_score"),
        learning_score=attrs.get("learning_score"),
        train_curve=attrs.get("train_curve", []),
        intermediate_values={str(step): value for step, value in trial.intermediate_values.items()},
        started=str(trial.datetime_start) if trial.datetime_start else None,
        finished=str(trial.datetime_complete) if trial.datetime_complete else None,
        lora=_lora(trial.params),
        confirm=attrs.get("confirm"),
        slot=trial_slot(trial),
    )


def _lora(params: dict[str, Any]) -> dict[str, Any] | None:
    """The adapter a trial's parameters describe; None before it drew them all (killed while drawing)."""
    try:
        return asdict(lora_from_params(params)) if params else None
    except (KeyError, TypeError, ValueError):
        return None


def trial_cost(trial: optuna.trial.FrozenTrial, tokens_per_step: int) -> tuple[int, float]:
    """The training tokens a trial used (the steps it ran) and its wall time in seconds."""
    steps = len(trial.user_attrs.get("train_curve", []))
    start, end = trial.datetime_start, trial.datetime_complete
    seconds = (end - start).total_seconds() if start and end else float(trial.user_attrs.get("train_seconds", 0.0))
    return steps * tokens_per_step, seconds


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that reached an end: complete, pruned, or failed for a recorded reason (not interrupted)."""
    return [t for t in study.get_trials(deepcopy=False) if is_finished(t)]


def is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    """Complete, pruned, or failed for a recorded reason (not interrupted)."""
    from optuna.trial import TrialState as OptunaState

    ended = (OptunaState.COMPLETE, OptunaState.PRUNED, OptunaState.FAIL)
    return trial.state in ended and not is_interrupted(trial)


def ended_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Every trial that ended, interrupted ones included (each has its record, and the recommendation counts it)."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
