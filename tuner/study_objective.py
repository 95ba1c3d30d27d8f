"""The study's objective: one Optuna trial runs one short training run, reports its held-out objective and is
pruned, scored, or recorded as infeasible."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.benchmarks import LEARNING_TASK, forgetting_score
from tuner.events import Reporter, TrialEvaluated, TrialProgress, TrialScored, TrialStarted
from tuner.objective import forgetting_rise, objective_value
from tuner.settings import LoraSettings, StudySettings
from tuner.space import SearchSpace, lora_from_params
from tuner.study_state import TrialState, finished_trials

if TYPE_CHECKING:
    import optuna
    from peft import PeftModel
    from transformers import PreTrainedModel

    from tuner.data import StudyData
    from tuner.evaluation import TaskScore, TrialScorer
    from tuner.runtime import Runtime
    from tuner.trial import TrialResult

Feasibility = Callable[[LoraSettings], "str | None"]
"""Why an adapter configuration would not fit the memory budget, or None if it fits."""


class TrialFailed(Exception):
    """A trial that could not run (out of memory); recorded as FAIL with its reason, and the study goes on."""


@dataclass
class TrialObjective:
    """Optuna's objective for one study: everything a trial needs, prepared once."""

    settings: StudySettings
    space: SearchSpace
    model: PreTrainedModel
    data: StudyData
    runtime: Runtime
    base_losses: dict[str, Any]
    report: Reporter
    feasible: Feasibility | None = None
    scorer: TrialScorer | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        """Run one trial; Optuna records its value, or PRUNED / FAIL with the reason in its attributes."""
        import optuna

        settings, budget, state = self.settings, self.settings.budget, TrialState(trial)
        params = self.space.suggest(trial)
        lora = lora_from_params(params)
        index = len(finished_trials(trial.study)) + 1
        self.report(TrialStarted(trial.number, index, settings.trials, budget.steps(), params))
        too_big = self.feasible(lora) if self.feasible is not None else None
        if too_big is not None:
            state.pruned(f"infeasible: {too_big}", infeasible=True)
            raise optuna.TrialPruned(too_big)

        scores: dict[str, TaskScore] = {}
        result = self._train(trial, lora, float(params["learning_rate"]), scores)
        state.trained(
            [[s, round(v, 5)] for s, v in result.train_curve],
            [list(e) for e in result.evaluations],
            round(result.tokens_per_second(), 1),
            round(result.train_seconds, 2),
        )
        if result.evaluations:
            _, target_loss, general_loss = result.evaluations[-1]
            state.losses(target_loss, general_loss, forgetting_rise(general_loss, self.base_losses["general_loss"]))
        if scores:
            self._record_scores(trial, scores)
        if result.stopped_reason:
            state.pruned(result.stopped_reason)
            raise optuna.TrialPruned(result.stopped_reason)
        return objective_value(target_loss, general_loss, self.base_losses["general_loss"], settings.goal)

    def _train(self, trial: optuna.Trial, lora: LoraSettings, rate: float, scores: dict[str, TaskScore]) -> TrialResult:
        """The trial's training run, reporting each step and evaluation; out of memory becomes TrialFailed."""
        import torch

        from tuner.trial import run_trial

        settings, budget = self.settings, self.settings.budget

        def on_step(step: int, loss: float, tokens_per_second: float) -> None:
            self.report(TrialProgress(trial.number, step, budget.steps(), loss, tokens_per_second))

        def on_eval(step: int, target_loss: float, general_loss: float) -> str | None:
            value = objective_value(target_loss, general_loss, self.base_losses["general_loss"], settings.goal)
            self.report(TrialEvaluated(trial.number, step, target_loss, general_loss, value))
            trial.report(value, step)
            if trial.should_prune():
                return (
                    f"pruned at step {step}: objective {value:.4f} is worse than the median of earlier "
                    "trials at this step"
                )
            return None

        def on_trained(adapted: PeftModel, result: TrialResult) -> None:
            if self.scorer is not None:
                scores.update(self.scorer(adapted, result.train_seconds) or {})

        try:
            return run_trial(
                self.model,
                self.data,
                lora,
                rate,
                budget,
                self.runtime,
                start_loss=self.base_losses["target_loss"],
                seed=settings.data.seed + trial.number,
                on_step=on_step,
                on_eval=on_eval,
                on_trained=on_trained,
            )
        except torch.OutOfMemoryError as error:
            peak = torch.cuda.max_memory_allocated() if self.runtime.is_cuda else None
            measured = f" (peak {peak / (1 << 30):.2f} GiB allocated)" if peak else ""
            TrialState(trial).failed(f"out of memory{measured}: {str(error).splitlines()[0]}", peak)
            raise TrialFailed(str(error)) from None

    def _record_scores(self, trial: optuna.Trial, scores: dict[str, TaskScore]) -> None:
        figures = {name: score.score for name, score in scores.items()}
        learning = LEARNING_TASK.get(self.settings.task)
        general, learned = forgetting_score(figures), figures.get(learning) if learning else None
        TrialState(trial).scored({name: score.as_dict() for name, score in scores.items()}, general, learned)
        self.report(TrialScored(trial.number, figures, general, learned))
