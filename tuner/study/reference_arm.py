"""A study's reference arm run after its search: full fine-tuning on the same data, budget, schedule and seed as the
trials, at rates around the pick's / 10, its best run scored on the pick's items, and its summary beside the
recommendation. The rates it tries and what it says are tuner.study.reference's (pure)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tuner.events import Stage
from tuner.records import Recommendation
from tuner.records.reference import ReferenceSummary
from tuner.scoring.benchmarks import LEARNING_TASK
from tuner.study.reference import (
    ReferenceScores,
    best_run,
    current_scores,
    rate_key,
    reference_rates,
    reference_summary,
)
from tuner.study.state import StudyState
from tuner.study.summary import pick_task_scores
from tuner.training.trial import row_losses, run_trial, swapped_weights, weights_copy

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tuner.study.run import Study
    from tuner.training.trial import TrialResult


def run_reference_arm(study: Study, recommendation: Recommendation) -> None:
    """Full fine-tuning at its rates around the pick's / 10, each trained as a trial is (same data, budget,
    schedule and seed) and measured on the held-out and confirm rows; each run is stored once it ends, so a study
    run again trains only the rates still missing. Where the pick has benchmark scores, the best run is scored on
    the same items, once: its weights are kept in memory from its run (trained again where they are not there)."""
    settings, options, runtime = study.settings, study.options, study.runtime
    state = study.state
    runs = dict(state.reference or {})
    rates = [
        rate for rate in reference_rates(recommendation.learning_rate, settings.task) if rate_key(rate) not in runs
    ]
    picked = pick_task_scores(state, recommendation.trial)
    items = picked[0] if picked is not None else None

    def to_score() -> str | None:
        """The best run's key where it waits to be scored on the pick's items; None where the pick has no scores,
        no run finished, or the best run's scores are stored."""
        best = best_run(runs)
        if items is None or best is None or current_scores(runs, state.reference_scores, items) is not None:
            return None
        return best

    if not rates and to_score() is None:
        return
    model = study.model if study.model is not None else study.load_model(" for the reference")
    base = state.base_losses or {}
    data, batch, dtype = study.inputs.data, settings.budget.batch_size, next(model.parameters()).dtype
    kept: dict[str, Any] = {}
    """The best run trained here, {key, weights} (in the model's dtype, in CPU memory), while it waits to be scored."""

    def train(rate: float, keep_below: float | None) -> dict[str, Any]:
        """One full run at `rate` as the study stores it; its weights are kept when its final target loss is under
        `keep_below` (None: never)."""
        confirm: dict[str, Any] = {}

        def measure(tuned: PreTrainedModel, result: TrialResult) -> None:
            if data.confirm is not None and data.confirm_general is not None:
                confirm["target"] = row_losses(tuned, data.confirm, batch, runtime)
                confirm["general"] = row_losses(tuned, data.confirm_general, batch, runtime)
            if keep_below is not None and result.evaluations and result.evaluations[-1][1] < keep_below:
                kept.clear()  # the run it beats is let go first: one run's weights in memory at a time
                kept.update(key=rate_key(rate), weights=weights_copy(tuned, dtype))

        result = run_trial(
            model,
            data,
            None,
            rate,
            settings.budget,
            runtime,
            start_loss=base.get("target_loss", math.inf),
            seed=settings.data.seed,
            on_trained=measure,
        )
        last = result.evaluations[-1] if result.evaluations else None
        return {
            "rate": rate,
            "target_loss": last[1] if last else None,
            "general_loss": last[2] if last else None,
            "stopped": result.stopped_reason,
            "tokens": result.train_tokens,
            "seconds": round(result.train_seconds, 1),
            "evaluations": [list(e) for e in result.evaluations],
            **({"confirm": confirm} if confirm else {}),
        }

    for index, rate in enumerate(rates, start=1):
        options.report(Stage(f"reference {index} of {len(rates)}: full fine-tuning at learning rate {rate:.3g}"))
        best = best_run(runs)
        best_loss = runs[best]["target_loss"] if best is not None else math.inf
        runs[rate_key(rate)] = train(rate, best_loss if items is not None else None)
        state.reference = runs
    best = to_score()
    if best is None or items is None:
        return
    rate = float(runs[best]["rate"])
    if kept.get("key") != best:  # trained in an earlier run of the study: its weights are gone
        options.report(Stage(f"full fine-tuning at learning rate {rate:.3g} again, to score its weights"))
        train(rate, keep_below=math.inf)  # the stored run stays the one reported
    if "weights" not in kept:  # stopped this time (diverged): nothing to score
        options.report(Stage(f"full fine-tuning at learning rate {rate:.3g} stopped early this time; not scored"))
        return
    with swapped_weights(model, kept["weights"]):
        figures = study.scorer().score_full(model, items)
    state.reference_scores = {"rate": rate, **figures}


def reference_beside(state: StudyState, recommendation: Recommendation) -> ReferenceSummary | None:
    """The reference arm's summary beside the recommended trial (None without a reference), with full fine-tuning's
    benchmark scores where its best run was scored on the pick's items."""
    runs = state.reference
    if not runs or recommendation.trial is None:
        return None
    objective = recommendation.objective
    lora_losses = (objective.target_loss, objective.general_loss)
    lora_confirm = (state.confirmed or {}).get(str(recommendation.trial))
    scores = None
    picked = pick_task_scores(state, recommendation.trial)
    if picked is not None:
        items, lora, base = picked
        full = current_scores(runs, state.reference_scores, items)
        if full is not None:
            learning = LEARNING_TASK.get(recommendation.task)
            scores = ReferenceScores(float(full["rate"]), items, full["scores"], lora, base, learning)
    return reference_summary(runs, recommendation.learning_rate, lora_losses, lora_confirm, scores)
