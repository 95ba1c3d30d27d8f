"""A study's last step, once its trials have ended: the best trials re-measured on the confirm sets, the
recommendation with its evidence (how the search ran, the data's size), the pick scored where trials were too short
to score each one, the reference arm beside it, and the recommendation written to the run directory and the storage.

The trial files and the scores' table and plot it writes are tuner.study.summary's.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.defaults import CONFIRM_TRIALS, HALVING_RATE, VARIANT_LABELS
from tuner.events import Stage, StudyFinished, TrialScored
from tuner.memory.report import checkpointing_cost
from tuner.memory.sizes import format_size
from tuner.paper import FINDINGS
from tuner.records import DataSize, Recommendation, TrialRecord
from tuner.rundir import write_json
from tuner.scoring.benchmarks import LEARNING_TASK, forgetting_score
from tuner.settings import LoraSettings
from tuner.study.budget import describe_spent
from tuner.study.confirm import mean_loss
from tuner.study.range_test import RangeResult
from tuner.study.recommend import recommend
from tuner.study.reference_arm import reference_beside, run_reference_arm
from tuner.study.space import lora_from_params, quantize_from_params
from tuner.study.summary import FINALISTS_DIR, pick_summary, study_scores, write_trials
from tuner.study.trial_objective import Spending, finalist_dir, save_whole
from tuner.training.trial import row_losses, run_trial

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tuner.study.run import Study
    from tuner.training.trial import TrialResult


def summarise(study: Study) -> Recommendation:
    """The trial files, the finalists re-measured, the recommendation with its evidence, the pick scored, the
    reference arm, and the recommendation written to the run directory and the storage; one summary at a time (a
    second finds the first's work stored and redoes none)."""
    with study.lock("finish"):
        settings, run_dir, options, optuna_study = study.settings, study.run_dir, study.options, study.optuna_study
        state = study.state
        records = write_trials(run_dir, optuna_study)

        def recommendation_now() -> Recommendation:
            chosen = recommend(
                settings,
                records,
                {k: v for k, v in (base or {}).items() if k != "model_identity"},
                runtime=study.runtime.describe(),
                run_dir=str(run_dir),
                scores=study_scores(settings, run_dir, state, records),
                search=_search_evidence(study),
            )
            scored = pick_summary(chosen.scores, chosen.trial)
            data = _data_size(study, records)
            chosen = replace(chosen, scores=scored, data=data, reference=reference_beside(state, chosen))
            return hardware_choices(chosen, study, records)

        study.model = _confirm_finalists(study, records)
        records = write_trials(run_dir, optuna_study)
        base = state.base_losses or study.base_losses
        recommendation = recommendation_now()
        if _score_pick(study, recommendation, records):
            recommendation = recommendation_now()
        if options.reference is not None and recommendation.trial is not None:
            run_reference_arm(study, recommendation)
            recommendation = recommendation_now()
        write_json(run_dir / "recommendation.json", recommendation.to_json())
        state.recommendation = recommendation.to_json()
        state.headline = recommendation.headline()
        options.report(StudyFinished(recommendation, records))
        return recommendation


def _data_size(study: Study, records: list[TrialRecord]) -> DataSize:
    """The study's training data and the trials' speed, from which a full run's duration is estimated."""
    speeds = sorted(r.tokens_per_second for r in records if r.tokens_per_second)  # pruned trials trained too
    data = study.inputs.data
    return DataSize(data.train_examples, data.train.tokens(), speeds[len(speeds) // 2] if speeds else None)


def _search_evidence(study: Study) -> list[str]:
    """How the search ran, in sentences for the advice: where it started, the range test, what it spent."""
    settings, state = study.settings, study.state
    notes = [f"Starting point {index + 1}: {point['rule']}." for index, point in enumerate(state.starting_points or [])]
    if state.range_test is not None:
        notes.append(f"Rates: {RangeResult.from_json(state.range_test).describe()}.")
    for variant, finding in (state.variant_range_tests or {}).items():
        notes.append(f"Rates of {VARIANT_LABELS[variant]}: {RangeResult.from_json(finding).describe()}.")
    notes.append(
        f"Successive halving evaluated trials at steps {', '.join(map(str, settings.budget.eval_steps()))} and "
        f"kept the best 1/{HALVING_RATE} at each."
    )
    spent = Spending(settings, study.optuna_study)
    budget = settings.search_budget
    notes.append(
        f"Spent: {describe_spent(budget, spent.spent())}."
        if budget is not None
        else f"Spent: {spent.spent().tokens:,} training tokens."
    )
    return notes


def _confirm_finalists(study: Study, records: list[TrialRecord]) -> PreTrainedModel | None:
    """Re-measure the best CONFIRM_TRIALS completed trials (from their kept adapters) and the base model on the
    confirm sets, once the search is over and only when there are two or more to choose between; returns the
    model, loaded if it had to be."""
    from peft import PeftModel

    settings, run_dir, options, runtime = study.settings, study.run_dir, study.options, study.runtime
    confirm, general = study.inputs.data.confirm, study.inputs.data.confirm_general
    complete = sorted((r for r in records if r.state == "COMPLETE" and r.value is not None), key=lambda r: r.value)
    finalists = complete[:CONFIRM_TRIALS]
    if confirm is None or general is None or len(finalists) < 2:
        return study.model
    state = study.state
    confirmed = dict(state.confirmed or {})
    todo = [r.number for r in finalists if r.confirm is None and str(r.number) not in confirmed]
    todo = [n for n in todo if (finalist_dir(run_dir / FINALISTS_DIR, n) / "adapter_config.json").is_file()]
    base = state.base_losses or {}
    params = {r.number: r.params for r in finalists}
    if not todo and "confirm_general_loss" in base:
        return study.model
    purpose = " to re-measure the best trials"
    model = study.base_for(None, purpose)  # the study's base (16-bit under --quantize search)
    batch = settings.budget.batch_size
    if "confirm_general_loss" not in base:
        options.report(Stage(f"measuring the base model on the confirm sets ({len(confirm)} + {len(general)} rows)"))
        state.base_losses = {
            **base,
            "confirm_target_loss": mean_loss(row_losses(model, confirm, batch, runtime)),
            "confirm_general_loss": mean_loss(row_losses(model, general, batch, runtime)),
        }
    for number in todo:
        options.report(Stage(f"re-measuring trial {number}, among the best {CONFIRM_TRIALS}, on the confirm sets"))
        trained_on = study.base_for(quantize_from_params(params[number]), purpose)
        adapted = PeftModel.from_pretrained(trained_on, str(finalist_dir(run_dir / FINALISTS_DIR, number)))
        try:
            confirmed[str(number)] = {
                "target": row_losses(adapted, confirm, batch, runtime),
                "general": row_losses(adapted, general, batch, runtime),
            }
        finally:
            adapted.unload()  # the base's own layers back, in place
        state.confirmed = confirmed
    return model


def _score_pick(study: Study, recommendation: Recommendation, records: list[TrialRecord]) -> bool:
    """Score the pick and the base model after the search, when trials were too short to score each one; returns
    whether scores were added. Scored once: a study run again keeps them until its pick changes."""
    settings, run_dir, options = study.settings, study.run_dir, study.options
    state = study.state
    plan, pick = state.score_plan, recommendation.trial
    if options.score_items == 0 or plan is None or plan.get("mode", "pick") != "pick" or pick is None:
        return False
    done = state.pick_scores
    if done is not None and done.get("trial") == pick and "scores" in done:
        return False
    adapter = finalist_dir(run_dir / FINALISTS_DIR, pick)
    record = next((r for r in records if r.number == pick), None)
    trained_elsewhere = options.parallel and record is not None and record.lora and record.lora["variant"] != "pissa"
    if not (adapter / "adapter_config.json").is_file() and not trained_elsewhere:
        why = "its adapter was not kept (a PiSSA adapter, or a trial from before adapters were kept)"
        state.pick_scores = {"trial": pick, "note": f"trial {pick} is not scored: {why}"}
        return True
    model = study.base_for(None, " to score the pick")
    quantize = quantize_from_params(record.params) if record is not None else None
    trained_on = study.base_for(quantize, " to score the pick")  # the 4-bit base for a QLoRA pick of --quantize search
    if not (adapter / "adapter_config.json").is_file():
        assert record is not None
        options.report(Stage(f"trial {pick}'s adapter is on another worker's machine: training it again here"))
        start = (state.base_losses or {}).get("target_loss", math.inf)
        _train_again(study, trained_on, record, adapter, start)
    train_seconds = sum(record.train_seconds or 0.0 for record in records)
    on_other = trained_on if trained_on is not model else None
    figures = study.scorer().score_pick(model, adapter, pick, train_seconds, on_other)
    scores = {name: float(score["score"]) for name, score in figures["scores"].items()}
    learning = LEARNING_TASK.get(settings.task)
    options.report(TrialScored(pick, scores, forgetting_score(scores), scores.get(learning) if learning else None))
    return True


def _train_again(study: Study, model: PreTrainedModel, record: TrialRecord, adapter: Path, start_loss: float) -> None:
    """Train a trial's adapter again as it was trained (its parameters, budget and seed) and keep it at `adapter`:
    for a pick trained by a worker on another machine, whose adapter this one does not hold."""

    def keep(adapted: Any, result: TrialResult) -> None:
        save_whole(adapted, adapter)

    lora = lora_from_params(record.params)
    adapter.parent.mkdir(parents=True, exist_ok=True)
    run_trial(
        model,
        study.inputs.data,
        lora,
        float(record.params["learning_rate"]),
        study.settings.budget,
        study.runtime,
        start_loss=start_loss,
        seed=study.settings.data.seed + (record.slot if record.slot is not None else record.number),
        on_trained=keep,
        gradient_checkpointing=study.needs_checkpointing(lora, record.params.get("quantize")),
    )


def hardware_choices(chosen: Recommendation, study: Study, records: list[TrialRecord]) -> Recommendation:
    """The recommendation with the trials' QLoRA and the pick's gradient checkpointing, each with why (the full run
    and the exports then use them too); under --quantize search the pick's own base weights (recommend's)."""
    evidence = dict(chosen.evidence)
    budget = study.settings.memory_budget
    if study.quantize == "nf4":
        asked = study.settings.quantize == "nf4"
        why = "asked with --quantize nf4" if asked else ""
        if not asked and budget is not None:
            why = f"only 4-bit weights fit the memory budget of {format_size(budget)} by the estimate"
        evidence["quantize"] = f"QLoRA: the trials trained on 4-bit NF4 base weights ({why}). {FINDINGS['qlora']}."
    quantize = chosen.quantize if study.quantize == "search" else study.quantize
    pick = LoraSettings(chosen.rank, chosen.alpha, chosen.targets, variant=chosen.variant)
    record = next((r for r in records if r.number == chosen.trial), None)
    drawn = record.params.get("quantize") if record is not None else None
    checkpointed = chosen.trial is not None and study.needs_checkpointing(pick, drawn)
    if checkpointed and budget is not None:
        evidence["gradient_checkpointing"] = (
            f"on: r={chosen.rank} on {chosen.targets} fits the memory budget of {format_size(budget)} only when each "
            f"layer's activations are recomputed in the backward pass. {checkpointing_cost(study.runtime.device.type)}"
        )
    return replace(chosen, quantize=quantize, gradient_checkpointing=checkpointed, evidence=evidence)
