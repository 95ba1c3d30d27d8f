"""The study's objective: one Optuna trial runs one short training run, reports its held-out objective and is
pruned, scored, or recorded as infeasible."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.defaults import CONFIRM_TRIALS, HALVING_RATE
from tuner.events import Reporter, Stage, TrialEvaluated, TrialProgress, TrialScored, TrialStarted
from tuner.faults import writing
from tuner.scoring.benchmarks import LEARNING_TASK, forgetting_score
from tuner.settings import LoraSettings, StudySettings
from tuner.study.budget import Spent, describe_spent
from tuner.study.confirm import worth_remeasuring
from tuner.study.objective import forgetting_rise, objective_value
from tuner.study.retry import trial_slot
from tuner.study.space import SearchSpace, lora_from_params, quantize_from_params
from tuner.study.state import study_spent
from tuner.study.trials import TrialState, finished_trials, trial_cost

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from peft import PeftModel
    from transformers import PreTrainedModel

    from tuner.data.prepare import StudyData
    from tuner.memory.bounds import Checkpointing, Feasibility
    from tuner.scoring.evaluation import TaskScore, TrialScorer
    from tuner.training.runtime import Runtime
    from tuner.training.trial import TrialResult


class TrialFailed(Exception):
    """A trial that could not run (out of memory); recorded as FAIL with its reason, and the study goes on."""


@dataclass
class Spending:
    """What the study has spent of its budget, and whether more steps still fit in it."""

    settings: StudySettings
    study: optuna.Study

    def spent(self, running: Spent | None = None) -> Spent:
        """The ended trials' and the range test's cost, plus a running trial's so far."""
        ended = study_spent(self.study, self.settings.budget.tokens_per_step())
        return ended + running if running is not None else ended

    def seconds_per_step(self) -> float:
        """Seconds per training step of the ended trials, evaluations included (0 before any)."""
        costs = [trial_cost(t, 1) for t in finished_trials(self.study)]
        steps = sum(steps for steps, _ in costs)
        return sum(seconds for _, seconds in costs) / steps if steps else 0.0

    def fits(self, steps: int, running: Spent | None = None, seconds_per_step: float | None = None) -> bool:
        """Whether `steps` more training steps fit in the study's budget (always, without one)."""
        budget = self.settings.search_budget
        if budget is None:
            return True
        per_step = self.seconds_per_step() if seconds_per_step is None else seconds_per_step
        return budget.allows(self.spent(running), steps * self.settings.budget.tokens_per_step(), steps * per_step)

    def first_rung_fits(self) -> bool:
        """Whether a new trial's first rung fits."""
        return self.fits(self.settings.budget.eval_steps()[0])

    def describe(self) -> tuple[str | None, float | None]:
        """Budget used and left, and the share spent; (None, None) without a budget."""
        budget = self.settings.search_budget
        if budget is None:
            return None, None
        spent = self.spent()
        return describe_spent(budget, spent), budget.spent_share(spent)


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
    checkpointing: Checkpointing | None = None
    """Whether a configuration fits the memory budget only with gradient checkpointing (its trial then runs so)."""
    scorer: TrialScorer | None = None
    spending: Spending | None = None
    finalists: Path | None = None
    """Where the adapters of the best CONFIRM_TRIALS completed trials are kept, to re-measure and score later."""
    remeasure_now: bool = False
    """Re-measure each finalist on the confirm sets as it ends (into the storage): with several workers, the one
    that summarises the study may not hold the adapter."""
    base_for: Callable[[str | None], PreTrainedModel] | None = None
    """Under --quantize search, the base a trial trains on for the weights it drew ('nf4' or None: `model`)."""

    def __call__(self, trial: optuna.Trial) -> float:
        """Run one trial; Optuna records its value, or PRUNED / FAIL with the reason in its attributes."""
        import optuna

        settings, budget, state = self.settings, self.settings.budget, TrialState(trial)
        params = self.space.suggest(trial)
        lora = lora_from_params(params)
        index = len(finished_trials(trial.study)) + 1
        total = settings.trials if settings.search_budget is None else 0  # a budget, not a count, ends the study
        self.report(TrialStarted(trial.number, index, total, budget.steps(), params))
        drawn = params.get("quantize")  # the base weights, where the study searches them
        too_big = self.feasible(lora, drawn) if self.feasible is not None else None
        if too_big is not None:
            state.pruned(f"infeasible: {too_big}", infeasible=True)
            raise optuna.TrialPruned(too_big)

        scores: dict[str, TaskScore] = {}
        checkpointed = self.checkpointing is not None and self.checkpointing(lora, drawn)
        if checkpointed:
            state.checkpointed()
        model = self.model if self.base_for is None else self.base_for(quantize_from_params(params))
        result = self._train(trial, model, lora, float(params["learning_rate"]), scores, checkpointed)
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

    def _train(
        self,
        trial: optuna.Trial,
        model: PreTrainedModel,
        lora: LoraSettings,
        rate: float,
        scores: dict[str, TaskScore],
        checkpointed: bool,
    ) -> TrialResult:
        """The trial's training run on `model` (with gradient checkpointing where `checkpointed`), reporting each
        step and evaluation; out of memory becomes TrialFailed."""
        import torch

        from tuner.training.trial import run_trial

        settings, budget = self.settings, self.settings.budget
        rungs, started = budget.eval_steps(), time.perf_counter()

        def on_step(step: int, loss: float, tokens_per_second: float) -> None:
            self.report(TrialProgress(trial.number, step, budget.steps(), loss, tokens_per_second))

        def on_eval(step: int, target_loss: float, general_loss: float) -> str | None:
            value = objective_value(target_loss, general_loss, self.base_losses["general_loss"], settings.goal)
            self.report(TrialEvaluated(trial.number, step, target_loss, general_loss, value))
            trial.report(value, step)
            if step == rungs[-1]:
                return None  # trained to the end: it completes
            if trial.should_prune():
                return (
                    f"pruned at step {step}: objective {value:.4f} is not in the best 1/{HALVING_RATE} of the "
                    "trials that reached this step (successive halving)"
                )
            next_rung = next(rung for rung in rungs if rung > step)
            elapsed = time.perf_counter() - started
            running = Spent(step * budget.tokens_per_step(), elapsed)
            if self.spending is not None and not self.spending.fits(next_rung - step, running, elapsed / step):
                return f"stopped at step {step}: the study's budget does not cover its next rung (step {next_rung})"
            return None

        def on_trained(adapted: PeftModel, result: TrialResult) -> None:
            if self._is_finalist(trial, result):
                if lora.variant == "pissa" or self.remeasure_now:  # PiSSA rewrites the base weights: measured now
                    self._remeasure(trial, adapted)
                if lora.variant != "pissa" and self.finalists is not None:
                    keep_finalist(self.finalists, trial, adapted, self._value(result))
            if self.scorer is None:
                return
            self.scorer.plan(result.train_seconds, result.tokens_per_second())
            if self.scorer.scores_trials():  # against the study's base, 16-bit under --quantize search
                scores.update(self.scorer(adapted, base=self.model if model is not self.model else None) or {})

        try:
            return run_trial(
                model,
                self.data,
                lora,
                rate,
                budget,
                self.runtime,
                start_loss=self.base_losses["target_loss"],
                seed=settings.data.seed + trial_slot(trial),  # a retry trains as its original did
                on_step=on_step,
                on_eval=on_eval,
                on_trained=on_trained,
                gradient_checkpointing=checkpointed,
            )
        except torch.OutOfMemoryError as error:
            peak = torch.cuda.max_memory_allocated() if self.runtime.is_cuda else None
            measured = f" (peak {peak / (1 << 30):.2f} GiB allocated)" if peak else ""
            TrialState(trial).failed(f"out of memory{measured}: {str(error).splitlines()[0]}", peak)
            raise TrialFailed(str(error)) from None

    def _value(self, result: TrialResult) -> float:
        """A completed trial's objective on the ranking rows."""
        _, target_loss, general_loss = result.evaluations[-1]
        return objective_value(target_loss, general_loss, self.base_losses["general_loss"], self.settings.goal)

    def _is_finalist(self, trial: optuna.Trial, result: TrialResult) -> bool:
        """Whether a trial that trained to its end is among the best CONFIRM_TRIALS completed so far (a trial
        outside them now can never enter them later)."""
        if not result.evaluations:
            return False
        return worth_remeasuring(self._value(result), list(completed_values(trial.study).values()))

    def _remeasure(self, trial: optuna.Trial, adapted: PeftModel) -> None:
        """Measure a finalist on the confirm sets now (a PiSSA adapter, which cannot be kept to measure later)."""
        from tuner.training.trial import row_losses

        confirm, general = self.data.confirm, self.data.confirm_general
        if confirm is None or general is None:
            return
        self.report(Stage(f"trial {trial.number} is among the best {CONFIRM_TRIALS}: re-measuring it now"))
        batch = self.settings.budget.batch_size
        TrialState(trial).remeasured(
            row_losses(adapted, confirm, batch, self.runtime), row_losses(adapted, general, batch, self.runtime)
        )

    def _record_scores(self, trial: optuna.Trial, scores: dict[str, TaskScore]) -> None:
        figures = {name: score.score for name, score in scores.items()}
        learning = LEARNING_TASK.get(self.settings.task)
        general, learned = forgetting_score(figures), figures.get(learning) if learning else None
        TrialState(trial).scored({name: score.as_dict() for name, score in scores.items()}, general, learned)
        self.report(TrialScored(trial.number, figures, general, learned))


def completed_values(study: optuna.Study) -> dict[int, float]:
    """The objectives of the study's completed trials, by trial number."""
    from optuna.trial import TrialState as OptunaState

    trials = study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
    return {t.number: t.value for t in trials if t.value is not None}


def finalist_dir(finalists: Path, number: int) -> Path:
    """Where a finalist trial's adapter is kept."""
    return finalists / f"trial_{number:04d}"


def save_whole(adapted: PeftModel, target: Path) -> None:
    """Save an adapter in PEFT's format at `target`, whole or not at all (written beside it, then renamed)."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with writing(target, partial):  # a full disk: the half-written adapter goes, and one line says where
        adapted.save_pretrained(str(partial))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def keep_finalist(finalists: Path, trial: optuna.Trial, adapted: PeftModel, value: float) -> None:
    """Keep the adapter of a trial among the best CONFIRM_TRIALS completed so far (PEFT's format, written whole or
    not at all), to re-measure and score after the search, and drop the adapters of trials that left them."""
    from optuna.trial import TrialState as OptunaState

    save_whole(adapted, finalist_dir(finalists, trial.number))
    values = {**completed_values(trial.study), trial.number: value}
    best = set(sorted(values, key=values.__getitem__)[:CONFIRM_TRIALS])
    running = {t.number for t in trial.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,))}
    for kept in finalists.glob("trial_*"):
        number = kept.name.removeprefix("trial_").removesuffix(".partial")
        if not number.isdigit():
            continue
        # Completed trials that left the best go, and what a killed worker left half written; another worker's
        # trial still ending here (not complete yet) stays.
        left = int(number) in values and int(number) not in best
        if left or (kept.name.endswith(".partial") and int(number) not in running):
            shutil.rmtree(kept, ignore_errors=True)
