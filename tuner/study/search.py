"""A study's search: on the model loaded once, the base model's held-out losses, the learning-rate range tests that
set the rates the trials draw from, then the trials still to run (claimed one at a time, beside any other workers,
each drawn by the options' sampler seeded by its slot and pruned by their pruner) while the study's budget lasts."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tuner.defaults import VARIANT_LABELS
from tuner.events import Stage, TrialFinished
from tuner.rundir import write_json
from tuner.settings import LoraSettings, StudySettings
from tuner.study.loop import run_trials
from tuner.study.range_test import RangeResult, RangeTestPlan, range_file, run_range_test
from tuner.study.space import SearchSpace, lora_from_params
from tuner.study.state import StudyState
from tuner.study.summary import FINALISTS_DIR, write_trial, write_trials
from tuner.study.trial_objective import Spending, TrialFailed, TrialObjective
from tuner.study.trials import finished_trials, trial_record
from tuner.training.trial import checkpointing, heldout_loss

if TYPE_CHECKING:
    import optuna
    from transformers import PreTrainedModel

    from tuner.study.run import Study

RANGE_TEST_SHARE = 0.25
"""The range tests take at most this share of a study's token budget (fewer steps, the same sweep of rates)."""
MIN_RANGE_TEST_STEPS = 8


def search(study: Study) -> None:
    """Run the trials still to run, while the budget lasts (nothing where the study has its trials or has spent
    its budget); a search that stops or fails leaves the record of the trial it ended."""
    if study.settings.trials <= len(finished_trials(study.optuna_study)) or not budget_left(study):
        return
    try:
        _search(study)
    except BaseException:  # stopped or failed: the trial it ended has its record now, not on resume
        if not study.options.worker:
            with contextlib.suppress(Exception):
                write_trials(study.run_dir, study.optuna_study)
        raise


def budget_left(study: Study) -> bool:
    """Whether another trial's first rung fits in the study's budget (always, without one)."""
    return Spending(study.settings, study.optuna_study).first_rung_fits()


def _search(study: Study) -> None:
    """Load the model, measure the base model's held-out losses once, run the trials left (claimed one at a time,
    beside any other workers); the model and the base losses stay on `study` for the summary."""
    from tuner.training.runtime import return_freed_memory  # looked up per call: tests record it instead

    settings, run_dir, options, runtime = study.settings, study.run_dir, study.options, study.runtime
    optuna_study, inputs = study.optuna_study, study.inputs
    if settings.memory_budget is not None and not runtime.is_cuda:
        # Under a budget, the peak the estimate predicts rather than the pages glibc keeps after freeing them
        # (bench/memory_estimate.py --allocators measures both).
        return_freed_memory()
    model = study.model = study.load_model()
    state = study.state
    with study.lock("setup"):  # the first worker measures the base model and runs the range tests; the others read them
        base = state.base_losses
        if base is None:
            options.report(Stage("scoring the base model on held-out target and general text"))
            batch = settings.budget.batch_size
            base = {
                "model_identity": inputs.identity,
                "target_loss": heldout_loss(model, inputs.data.heldout, batch, runtime),
                "general_loss": heldout_loss(model, inputs.data.general, batch, runtime),
            }
            state.base_losses = base
        study.base_losses = base
        space = searched_space(study, model)
    scorer = study.scorer() if options.score_items != 0 else None
    spend = Spending(settings, optuna_study)
    objective = TrialObjective(
        settings,
        space,
        model,
        inputs.data,
        runtime,
        base,
        options.report,
        study.feasible,
        study.checkpointing,
        scorer,
        spend,
        run_dir / FINALISTS_DIR,
        remeasure_now=options.parallel,
        base_for=study.base_for if study.quantize == "search" else None,
    )

    def trial_done(trial: optuna.trial.FrozenTrial) -> None:
        record = trial_record(trial)
        write_trial(run_dir, record)
        end = trial.datetime_complete
        seconds = (end - trial.datetime_start).total_seconds() if end and trial.datetime_start else 0.0
        spent = spend.describe()
        options.report(TrialFinished(trial.number, trial.state.name, trial.value, record.reason, seconds, *spent))

    def reseed(slot: int) -> None:
        """Each trial drawn from a sampler seeded by its slot: a resumed study draws what the uninterrupted one drew,
        workers drawing at once draw apart, and (with several) TPE's constant liar keeps them off the
        configurations still running."""
        optuna_study.sampler = study.sampler(slot)

    run_trials(
        optuna_study,
        objective,
        lambda: StudyState(optuna_study).trials or settings.trials,
        lambda: budget_left(study),
        study.lock,
        failed=(TrialFailed,),
        after=trial_done,
        wait_for_running=not options.worker,
        reseed=reseed,
    )


def searched_space(study: Study, model: PreTrainedModel) -> SearchSpace:
    """The space the trials draw from: its rates from the range tests (each run once, first: the single guess's,
    then one per other variant searched, whose trials draw from their own range), widened to hold the starting
    points."""
    settings, run_dir, options, inputs = study.settings, study.run_dir, study.options, study.inputs
    state = study.state
    space = study.space
    points = state.starting_points or []
    guess = lora_from_params(points[0]["params"]) if points else LoraSettings(16, 32.0, "all")
    others = [variant for variant in space.variants if variant != guess.variant]
    plan = range_test_within_budget(options.range_test, settings, 1 + len(others))

    def range_test(lora: LoraSettings, variant: str | None, plan: RangeTestPlan) -> dict[str, Any]:
        named = f" of {VARIANT_LABELS[lora.variant]}" if variant else ""
        sweep = f"{plan.start:g} to {plan.end:g} over {plan.steps} steps"
        options.report(Stage(f"learning-rate range test{named}: {sweep}"))
        with checkpointing(model, study.needs_checkpointing(lora)):
            found = run_range_test(model, inputs.data, lora, study.runtime, plan, seed=settings.data.seed)
        write_json(run_dir / range_file(variant), found.to_json())
        options.report(Stage(found.describe()))
        return {key: value for key, value in found.to_json().items() if key != "curve"}

    if plan is not None and state.range_test is None:
        state.range_test = range_test(guess, None, plan)
    if plan is not None and others:
        tested = dict(state.variant_range_tests or {})
        for variant in others:
            if variant not in tested:
                tested[variant] = range_test(replace(guess, variant=variant), variant, plan)
                state.variant_range_tests = tested
    if state.range_test is not None:
        found = RangeResult.from_json(state.range_test)
        if found.conclusive:
            space = space.with_rates(found.low, found.high)
    for variant, finding in (state.variant_range_tests or {}).items():
        found = RangeResult.from_json(finding)
        if found.conclusive and variant in space.variants:
            space = space.with_rates(found.low, found.high, variant)
    for point in state.starting_points or []:
        space = space.including(point["params"])
    for params in options.first_configurations:
        space = space.including(params)
    return space


def range_test_within_budget(plan: RangeTestPlan | None, settings: StudySettings, tests: int) -> RangeTestPlan | None:
    """The range test cut to its share of a token budget, split among `tests` tests; None (the space's own rates)
    where fewer than MIN_RANGE_TEST_STEPS steps would fit. A time budget, or none, leaves it as it is."""
    budget = settings.search_budget
    if plan is None or budget is None or budget.tokens is None:
        return plan
    steps = int(RANGE_TEST_SHARE * budget.tokens / tests // (plan.rows * settings.budget.seq_len))
    if steps >= plan.steps:
        return plan
    return replace(plan, steps=steps) if steps >= MIN_RANGE_TEST_STEPS else None
