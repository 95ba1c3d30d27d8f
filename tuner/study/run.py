"""The Optuna study, top to bottom like a training recipe: set up (the stored study, the data, the run directory
and its storage), search (a learning-rate range test, the starting points from rules that scale, then TPE with
successive halving, on the model loaded once, until the trials or the study's budget are spent), summarise
(trial files, the recommendation with its evidence, the scores and their plot).

Resumable: the same call on the same run directory continues the study; an interrupted trial runs again.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.events import Reporter, Stage, StudyFinished, StudyStarted, TrialFinished, ignore
from tuner.records import Recommendation, TrialRecord
from tuner.rundir import run_dir_lock, write_json
from tuner.scoring.benchmarks import LEARNING_TASK, forgetting_score, study_benchmarks
from tuner.settings import CONFIRM_TRIALS, HALVING_RATE, VARIANT_LABELS, LoraSettings, StudySettings, TrainBudget
from tuner.study.budget import describe_spent
from tuner.study.confirm import mean_loss
from tuner.study.loop import StudyLock, run_trials
from tuner.study.priors import starting_points
from tuner.study.range_test import RangeTestPlan
from tuner.study.recommend import recommend
from tuner.study.space import SearchSpace, lora_from_params
from tuner.study.state import (
    StudyState,
    default_storage,
    finished_trials,
    open_storage,
    requeue_interrupted,
    stored_study,
    study_name,
    trial_record,
)
from tuner.study.summary import (
    FINALISTS_DIR,
    TRIALS_DIR,
    pick_summary,
    pick_task_scores,
    study_scores,
    write_trial,
    write_trials,
)
from tuner.study.trial_objective import Feasibility, Spending, TrialFailed, TrialObjective, finalist_dir, save_whole
from tuner.training.runtime import pick_runtime, quiet_libraries

if TYPE_CHECKING:
    import optuna
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuner.data.prepare import StudyData
    from tuner.models.load import ModelSource
    from tuner.scoring.evaluation import TrialScorer
    from tuner.training.runtime import Runtime
    from tuner.training.trial import TrialResult

__all__ = ["Feasibility", "run_study"]

STARTUP_TRIALS = 5
"""Trials before TPE models the space: the enqueued starting points, then random draws."""


@dataclass(frozen=True)
class StudyOptions:
    """How a study runs, besides the settings that identify it."""

    data_dir: Path | None = None
    """The local mirror (None: the hub)."""
    storage: str | None = None
    """An Optuna RDB URL shared with other studies (None: RUN_DIR/study.db)."""
    space: SearchSpace = field(default_factory=SearchSpace)
    """The search space."""
    report: Reporter = ignore
    allow_code_execution: bool = False
    """HumanEval may run the model's code (in the sandbox) when scoring trials."""
    score_items: int | None = None
    """Items per benchmark when scoring trials: None sizes them to the trial time, 0 turns scoring off."""
    feasible: Feasibility | None = None
    """Why a configuration would not fit the memory budget (None when it fits); checked before a trial runs."""
    first_configurations: tuple[dict[str, Any], ...] = ()
    """Parameters tried before the starting points (a preset the study starts from)."""
    range_test: RangeTestPlan | None = field(default_factory=RangeTestPlan)
    """The learning-rate range test run before the search (None: search the space's own rates)."""
    reference: str | None = None
    """'full': after the search, full fine-tuning on the same data and budget at its own rates, beside the pick."""
    study: str | None = None
    """The study's name in a shared storage (None: the run directory's path names it)."""
    worker: bool = False
    """Only run trials: another process (the one that started this worker) holds the run directory and summarises."""
    spawn: Callable[[], None] | None = None
    """Runs the study's other workers to their end; called once the study is set up, before this process's search
    (which then summarises what they ran)."""

    @property
    def parallel(self) -> bool:
        """Whether other workers may run this study's trials at the same time."""
        return self.storage is not None or self.worker or self.spawn is not None


@dataclass(frozen=True)
class StudyInputs:
    """What set-up prepared: the model's source and identity, its tokenizer and the packed data."""

    source: ModelSource
    identity: str
    tokenizer: PreTrainedTokenizerBase
    data: StudyData
    hidden_size: int | None
    """The model's width (None where its config names none), for the width rule's learning rate."""
    model_type: str


@dataclass(frozen=True)
class StudyRun:
    """This process's run of a study: what every stage after set-up works from."""

    settings: StudySettings
    run_dir: Path
    study: optuna.Study
    inputs: StudyInputs
    runtime: Runtime
    opts: StudyOptions

    def fields(self) -> tuple[StudySettings, Path, optuna.Study, StudyInputs, Runtime, StudyOptions]:
        return self.settings, self.run_dir, self.study, self.inputs, self.runtime, self.opts

    def load_model(self, purpose: str = "") -> PreTrainedModel:
        """The model on this process's device, saying what for (" to score the pick")."""
        from tuner.models.load import load_model

        self.opts.report(Stage(f"loading {self.inputs.source.describe()} on {self.runtime.describe()}{purpose}"))
        return load_model(self.inputs.source, self.runtime.device, self.runtime.dtype)


def run_study(
    settings: StudySettings,
    run_dir: Path,
    *,
    data_dir: Path | None = None,
    storage: str | None = None,
    space: SearchSpace | None = None,
    report: Reporter = ignore,
    allow_code_execution: bool = False,
    score_items: int | None = None,
    feasible: Feasibility | None = None,
    first_configurations: list[dict[str, Any]] | None = None,
    range_test: RangeTestPlan | None = RangeTestPlan(),  # noqa: B008 (frozen)
    reference: str | None = None,
    study: str | None = None,
    worker: bool = False,
    spawn: Callable[[], None] | None = None,
) -> Recommendation | None:
    """Run (or resume, or join) a study to its trial count; returns the recommendation (also in recommendation.json
    and in the storage), or None for a worker, which only runs trials.

    The options are StudyOptions' fields, as keywords.
    """
    opts = StudyOptions(
        data_dir,
        storage,
        space or SearchSpace(),
        report,
        allow_code_execution,
        score_items,
        feasible,
        tuple(first_configurations or ()),
        range_test,
        reference,
        study,
        worker,
        spawn,
    )

    # Set up: the stored study must match these settings; the data is prepared before anything is written.
    if study is not None and storage is None:
        raise AdvisorError("--study names a study in a shared storage: give its --storage URL too")
    name = study or study_name(run_dir, external_storage=storage is not None)
    url = storage or default_storage(run_dir)
    shared = open_storage(storage) if storage else None
    _check_stored(settings, run_dir, name, shared, opts)
    inputs = _prepare_inputs(settings, opts)
    lock = StudyLock(url, name)
    with _run_directory(run_dir, hold=not worker):
        optuna_study = _open_study(settings, name, shared or open_storage(url))
        state = StudyState(optuna_study)
        with lock("setup"):
            if state.start(settings):
                points = starting_points(opts.space, inputs.hidden_size, inputs.model_type, settings.task)
                state.starting_points = [point.to_json() for point in points]
                for params in [*opts.first_configurations, *(point.params for point in points)]:
                    if opts.feasible is None or opts.feasible(lora_from_params(params)) is None:
                        optuna_study.enqueue_trial(opts.space.fitting(params), skip_if_exists=True)
            if not worker:
                state.record_run(settings)
            if storage is None and not worker:  # its own file, before any worker starts: a trial left running
                requeue_interrupted(optuna_study)  # was killed with the process that ran it
        (run_dir / TRIALS_DIR).mkdir(exist_ok=True)
        if not worker:
            write_json(run_dir / "settings.json", {**settings.to_json(), "storage": opts.storage or "study.db"})
            write_trials(run_dir, optuna_study)
        finished = len(finished_trials(optuna_study))
        spending = Spending(settings, optuna_study)
        opts.report(StudyStarted(settings.trials, finished, str(run_dir), *spending.describe()))
        base = state.base_losses
        if base is not None and base.get("model_identity") != inputs.identity:
            changed = f"the weights of {settings.model} changed since this study started; use another --out"
            raise AdvisorError(changed)
        if opts.spawn is not None:
            opts.spawn()  # the other workers, to their end; this process then runs what they left

        # Search: the trials still to run, on the model loaded once, while the budget lasts.
        runtime = pick_runtime()
        run = StudyRun(settings, run_dir, optuna_study, inputs, runtime, opts)
        model = None
        if settings.trials > len(finished_trials(optuna_study)) and _budget_left(settings, optuna_study):
            try:
                base, model = _search(run, lock)
            except BaseException:  # stopped or failed: the trial it ended has its record now, not on resume
                if not worker:
                    with contextlib.suppress(Exception):
                        write_trials(run_dir, optuna_study)
                raise
        if worker:
            return None
        with lock("finish"):  # one summary at a time: a second finds the first's work stored and redoes none
            return _summarise(run, model, base)


def _summarise(
    run: StudyRun,
    model: PreTrainedModel | None,
    base: dict[str, Any] | None,
) -> Recommendation:
    """The trial files, the finalists re-measured, the recommendation with its evidence, the pick scored, the
    reference arm, and the recommendation written to the run directory and the storage."""
    settings, run_dir, study, inputs, runtime, opts = run.fields()
    state = StudyState(study)
    # Summarise: the trial files, the recommendation with its evidence, the scores and their plot.
    records = write_trials(run_dir, study)

    def recommendation_now() -> Recommendation:
        chosen = recommend(
            settings,
            records,
            {k: v for k, v in (base or {}).items() if k != "model_identity"},
            runtime=runtime.describe(),
            run_dir=str(run_dir),
            scores=study_scores(settings, run_dir, state, records),
            search=_search_evidence(settings, study),
        )
        scored = pick_summary(chosen.scores, chosen.trial)
        return replace(chosen, scores=scored, data=_data_size(inputs, records), reference=_reference(state, chosen))

    model = _confirm_finalists(run, model, records)
    records = write_trials(run_dir, study)
    base = state.base_losses or base
    recommendation = recommendation_now()
    if _score_pick(run, model, recommendation, records):
        recommendation = recommendation_now()
    if opts.reference is not None and recommendation.trial is not None:
        _reference_arm(run, model, recommendation)
        recommendation = recommendation_now()
    write_json(run_dir / "recommendation.json", recommendation.to_json())
    state.recommendation = recommendation.to_json()
    state.headline = recommendation.headline()
    opts.report(StudyFinished(recommendation, records))
    return recommendation


def _data_size(inputs: StudyInputs, records: list[TrialRecord]) -> dict[str, Any]:
    """The study's training data and the trials' speed, from which a full run's duration is estimated."""
    speeds = sorted(r.tokens_per_second for r in records if r.tokens_per_second)  # pruned trials trained too
    train = inputs.data.train
    return {
        "train_examples": inputs.data.train_examples,
        "train_tokens": train.tokens(),
        "tokens_per_second": speeds[len(speeds) // 2] if speeds else None,
    }


def _search_evidence(settings: StudySettings, study: optuna.Study) -> list[str]:
    """How the search ran, in sentences for the advice: where it started, the range test, what it spent."""
    from tuner.study.range_test import RangeResult

    state = StudyState(study)
    notes = [f"Starting point {index + 1}: {point['rule']}." for index, point in enumerate(state.starting_points or [])]
    if state.range_test is not None:
        notes.append(f"Rates: {RangeResult.from_json(state.range_test).describe()}.")
    for variant, finding in (state.variant_range_tests or {}).items():
        notes.append(f"Rates of {VARIANT_LABELS[variant]}: {RangeResult.from_json(finding).describe()}.")
    notes.append(
        f"Successive halving evaluated trials at steps {', '.join(map(str, settings.budget.eval_steps()))} and "
        f"kept the best 1/{HALVING_RATE} at each."
    )
    spent = Spending(settings, study)
    budget = settings.search_budget
    notes.append(
        f"Spent: {describe_spent(budget, spent.spent())}."
        if budget is not None
        else f"Spent: {spent.spent().tokens:,} training tokens."
    )
    return notes


def _check_stored(
    settings: StudySettings,
    run_dir: Path,
    name: str,
    storage: optuna.storages.RDBStorage | None,
    opts: StudyOptions,
) -> optuna.Study | None:
    """The study already stored for this run directory (or under --study), refused when it was started with other
    settings, or when its workers run it to another trial count or budget."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if run_dir.exists() and not run_dir.is_dir():
        raise AdvisorError(f"--out {run_dir} exists and is not a directory")
    stored = stored_study(run_dir, name, storage)
    if stored is not None:
        where = f"study {opts.study!r}" if opts.study is not None else str(run_dir)
        state = StudyState(stored)
        state.check_identity(settings, run_dir, where)
        if opts.study is not None and not opts.worker:
            state.check_joining(settings, where)
    return stored


def _prepare_inputs(settings: StudySettings, opts: StudyOptions) -> StudyInputs:
    """The model's source, identity and width, its tokenizer, and the task and general text packed once."""
    from tuner.data.prepare import pair_columns, prepare_study_data
    from tuner.models.load import load_tokenizer, model_config, model_identity, resolve_model

    quiet_libraries()
    source = resolve_model(settings.model)
    pair_columns(settings.data, opts.data_dir)  # the data's own errors before any loading (read once per process)
    opts.report(Stage(f"loading tokenizer of {source.describe()}"))
    tokenizer = load_tokenizer(source)
    opts.report(Stage(f"preparing {settings.task} data"))
    data = prepare_study_data(settings.data, settings.budget.packing(), tokenizer, opts.data_dir)
    config = model_config(source)
    width = next(
        (config[key] for key in ("hidden_size", "n_embd", "d_model") if isinstance(config.get(key), int)), None
    )
    return StudyInputs(source, model_identity(source), tokenizer, data, width, str(config.get("model_type", "")))


@contextlib.contextmanager
def _run_directory(run_dir: Path, hold: bool = True) -> Iterator[None]:
    """Hold the run directory for this process (`hold`; a worker shares the one its parent holds); a new one is
    removed again if it fails before any trial file."""
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_dir_lock(run_dir) if hold else contextlib.nullcontext():
            yield
    except BaseException:
        if created and not (run_dir / TRIALS_DIR).exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was stored: leave nothing behind
        raise


def _open_study(settings: StudySettings, name: str, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The study in its storage, created on first use."""
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=_sampler(settings.data.seed),  # seeded again for each trial's slot when it is claimed
        pruner=halving_pruner(settings.budget),
    )


def _sampler(seed: int, constant_liar: bool = False) -> optuna.samplers.BaseSampler:
    """TPE over the space's parameters jointly, after STARTUP_TRIALS; with `constant_liar`, trials still running
    count as bad, so that parallel workers spread out."""
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True, constant_liar=constant_liar
    )


def halving_pruner(budget: TrainBudget) -> optuna.pruners.BasePruner:
    """Successive halving at the trial's evaluation steps (the first lies past the warm-up): each rung keeps the
    best 1 / HALVING_RATE of the trials that reached it, so a pruned configuration costs a fraction of a trial; a
    failed trial's rungs never count."""
    import optuna

    from tuner.study.retry import results_only

    return results_only(optuna.pruners.SuccessiveHalvingPruner)(
        min_resource=budget.eval_steps()[0], reduction_factor=HALVING_RATE, min_early_stopping_rate=0
    )


def _search(
    run: StudyRun,
    lock: StudyLock,
) -> tuple[dict[str, Any], PreTrainedModel]:
    """Load the model, measure the base model's held-out losses once, run the trials left (claimed one at a time,
    beside any other workers); returns the base losses and the model."""
    from tuner.training.runtime import return_freed_memory  # looked up per call: tests record it instead
    from tuner.training.trial import heldout_loss

    settings, run_dir, study, inputs, runtime, opts = run.fields()
    if settings.memory_budget is not None and not runtime.is_cuda:
        # Under a budget, the peak the estimate predicts rather than glibc's retained pages: 2.8 GB
        # instead of 4.7 GB for r=16 at 4 x 256 on SmolLM2-135M, at 125-160 instead of 190-200 tokens/s.
        return_freed_memory()
    model = run.load_model()
    state = StudyState(study)
    with lock("setup"):  # the first worker measures the base model and runs the range tests; the others read them
        base = state.base_losses
        if base is None:
            opts.report(Stage("scoring the base model on held-out target and general text"))
            batch = settings.budget.batch_size
            base = {
                "model_identity": inputs.identity,
                "target_loss": heldout_loss(model, inputs.data.heldout, batch, runtime),
                "general_loss": heldout_loss(model, inputs.data.general, batch, runtime),
            }
            state.base_losses = base
        space = _searched_space(run, model)
    scorer = _scorer(run) if opts.score_items != 0 else None
    spend = Spending(settings, study)
    objective = TrialObjective(
        settings,
        space,
        model,
        inputs.data,
        runtime,
        base,
        opts.report,
        opts.feasible,
        scorer,
        spend,
        run_dir / FINALISTS_DIR,
        remeasure_now=opts.parallel,
    )

    def trial_done(trial: optuna.trial.FrozenTrial) -> None:
        record = trial_record(trial)
        write_trial(run_dir, record)
        end = trial.datetime_complete
        seconds = (end - trial.datetime_start).total_seconds() if end and trial.datetime_start else 0.0
        spent = spend.describe()
        opts.report(TrialFinished(trial.number, trial.state.name, trial.value, record.reason, seconds, *spent))

    def reseed(slot: int) -> None:
        """Each trial drawn from a sampler seeded by its slot: a resumed study draws what the uninterrupted one drew,
        workers drawing at once draw apart, and (with several) TPE's constant liar keeps them off the
        configurations still running."""
        study.sampler = _sampler(settings.data.seed + slot, constant_liar=opts.parallel)

    run_trials(
        study,
        objective,
        lambda: StudyState(study).trials or settings.trials,
        lambda: _budget_left(settings, study),
        lock,
        failed=(TrialFailed,),
        after=trial_done,
        wait_for_running=not opts.worker,
        reseed=reseed,
    )
    return base, model


def _confirm_finalists(
    run: StudyRun,
    model: PreTrainedModel | None,
    records: list[TrialRecord],
) -> PreTrainedModel | None:
    """Re-measure the best CONFIRM_TRIALS completed trials (from their kept adapters) and the base model on the
    confirm sets, once the search is over and only when there are two or more to choose between; returns the
    model, loaded if it had to be."""
    from peft import PeftModel

    from tuner.training.trial import row_losses

    settings, run_dir, study, inputs, runtime, opts = run.fields()
    confirm, general = inputs.data.confirm, inputs.data.confirm_general
    complete = sorted((r for r in records if r.state == "COMPLETE" and r.value is not None), key=lambda r: r.value)
    finalists = complete[:CONFIRM_TRIALS]
    if confirm is None or general is None or len(finalists) < 2:
        return model
    state = StudyState(study)
    confirmed = dict(state.confirmed or {})
    todo = [r.number for r in finalists if r.confirm is None and str(r.number) not in confirmed]
    todo = [n for n in todo if (finalist_dir(run_dir / FINALISTS_DIR, n) / "adapter_config.json").is_file()]
    base = state.base_losses or {}
    if not todo and "confirm_general_loss" in base:
        return model
    if model is None:
        model = run.load_model(" to re-measure the best trials")
    batch = settings.budget.batch_size
    if "confirm_general_loss" not in base:
        opts.report(Stage(f"measuring the base model on the confirm sets ({len(confirm)} + {len(general)} rows)"))
        state.base_losses = {
            **base,
            "confirm_target_loss": mean_loss(row_losses(model, confirm, batch, runtime)),
            "confirm_general_loss": mean_loss(row_losses(model, general, batch, runtime)),
        }
    for number in todo:
        opts.report(Stage(f"re-measuring trial {number}, among the best {CONFIRM_TRIALS}, on the confirm sets"))
        adapted = PeftModel.from_pretrained(model, str(finalist_dir(run_dir / FINALISTS_DIR, number)))
        try:
            confirmed[str(number)] = {
                "target": row_losses(adapted, confirm, batch, runtime),
                "general": row_losses(adapted, general, batch, runtime),
            }
        finally:
            model = adapted.unload()
        state.confirmed = confirmed
    return model


def _score_pick(
    run: StudyRun,
    model: PreTrainedModel | None,
    recommendation: Recommendation,
    records: list[TrialRecord],
) -> bool:
    """Score the pick and the base model after the search, when trials were too short to score each one; returns
    whether scores were added. Scored once: a study run again keeps them until its pick changes."""
    from tuner.events import TrialScored

    settings, run_dir, study, _, _, opts = run.fields()
    state = StudyState(study)
    plan, pick = state.score_plan, recommendation.trial
    if opts.score_items == 0 or plan is None or plan.get("mode", "pick") != "pick" or pick is None:
        return False
    done = state.pick_scores
    if done is not None and done.get("trial") == pick and "scores" in done:
        return False
    adapter = finalist_dir(run_dir / FINALISTS_DIR, pick)
    record = next((r for r in records if r.number == pick), None)
    trained_elsewhere = opts.parallel and record is not None and record.lora and record.lora["variant"] != "pissa"
    if not (adapter / "adapter_config.json").is_file() and not trained_elsewhere:
        why = "its adapter was not kept (a PiSSA adapter, or a trial from before adapters were kept)"
        state.pick_scores = {"trial": pick, "note": f"trial {pick} is not scored: {why}"}
        return True
    if model is None:
        model = run.load_model(" to score the pick")
    if not (adapter / "adapter_config.json").is_file():
        assert record is not None
        opts.report(Stage(f"trial {pick}'s adapter is on another worker's machine: training it again here"))
        start = (state.base_losses or {}).get("target_loss", math.inf)
        _train_again(run, model, record, adapter, start)
    train_seconds = sum(record.train_seconds or 0.0 for record in records)
    figures = _scorer(run).score_pick(model, adapter, pick, train_seconds)
    scores = {name: float(score["score"]) for name, score in figures["scores"].items()}
    learning = LEARNING_TASK.get(settings.task)
    opts.report(TrialScored(pick, scores, forgetting_score(scores), scores.get(learning) if learning else None))
    return True


def _train_again(run: StudyRun, model: PreTrainedModel, record: TrialRecord, adapter: Path, start_loss: float) -> None:
    """Train a trial's adapter again as it was trained (its parameters, budget and seed) and keep it at `adapter`:
    for a pick trained by a worker on another machine, whose adapter this one does not hold."""
    from tuner.training.trial import run_trial

    settings, _, _, inputs, runtime, _ = run.fields()

    def keep(adapted: Any, result: TrialResult) -> None:
        save_whole(adapted, adapter)

    adapter.parent.mkdir(parents=True, exist_ok=True)
    run_trial(
        model,
        inputs.data,
        lora_from_params(record.params),
        float(record.params["learning_rate"]),
        settings.budget,
        runtime,
        start_loss=start_loss,
        seed=settings.data.seed + (record.slot if record.slot is not None else record.number),
        on_trained=keep,
    )


def _reference_arm(run: StudyRun, model: PreTrainedModel | None, recommendation: Recommendation) -> None:
    """Full fine-tuning at its rates around the pick's / 10, each trained as a trial is (same data, budget,
    schedule and seed) and measured on the held-out and confirm rows; each run is stored once it ends, so a study
    run again trains only the rates still missing. Where the pick has benchmark scores, the best run is scored on
    the same items, once: its weights are kept in memory from its run (trained again where they are not there)."""
    from tuner.study.reference import best_run, current_scores, rate_key, reference_rates
    from tuner.training.trial import row_losses, run_trial, swapped_weights, weights_copy

    settings, _, study, inputs, runtime, opts = run.fields()
    state = StudyState(study)
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
    if model is None:
        model = run.load_model(" for the reference")
    base = state.base_losses or {}
    data, batch, dtype = inputs.data, settings.budget.batch_size, next(model.parameters()).dtype
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
        opts.report(Stage(f"reference {index} of {len(rates)}: full fine-tuning at learning rate {rate:.3g}"))
        best = best_run(runs)
        best_loss = runs[best]["target_loss"] if best is not None else math.inf
        runs[rate_key(rate)] = train(rate, best_loss if items is not None else None)
        state.reference = runs
    best = to_score()
    if best is None or items is None:
        return
    rate = float(runs[best]["rate"])
    if kept.get("key") != best:  # trained in an earlier run of the study: its weights are gone
        opts.report(Stage(f"full fine-tuning at learning rate {rate:.3g} again, to score its weights"))
        train(rate, keep_below=math.inf)  # the stored run stays the one reported
    if "weights" not in kept:  # stopped this time (diverged): nothing to score
        opts.report(Stage(f"full fine-tuning at learning rate {rate:.3g} stopped early this time; not scored"))
        return
    with swapped_weights(model, kept["weights"]):
        figures = _scorer(run).score_full(model, items)
    state.reference_scores = {"rate": rate, **figures}


def _reference(state: StudyState, recommendation: Recommendation) -> dict[str, Any] | None:
    """The reference arm's summary beside the recommended trial (None without a reference), with full fine-tuning's
    benchmark scores where its best run was scored on the pick's items."""
    from tuner.study.reference import ReferenceScores, current_scores, reference_summary

    runs = state.reference
    if not runs or recommendation.trial is None:
        return None
    objective = recommendation.objective or {}
    lora_losses = (objective.get("target_loss"), objective.get("general_loss"))
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


def _budget_left(settings: StudySettings, study: optuna.Study) -> bool:
    """Whether another trial's first rung fits in the study's budget (always, without one)."""
    return Spending(settings, study).first_rung_fits()


def _searched_space(run: StudyRun, model: PreTrainedModel) -> SearchSpace:
    """The space the trials draw from: its rates from the range tests (each run once, first: the single guess's,
    then one per other variant searched, whose trials draw from their own range), widened to hold the starting
    points."""
    from tuner.study.range_test import RangeResult, range_file, run_range_test

    settings, run_dir, study, inputs, runtime, opts = run.fields()
    state = StudyState(study)
    space = opts.space
    points = state.starting_points or []
    guess = lora_from_params(points[0]["params"]) if points else LoraSettings(16, 32.0, "all")
    others = [variant for variant in space.variants if variant != guess.variant]
    plan = range_test_within_budget(opts.range_test, settings, 1 + len(others))

    def range_test(lora: LoraSettings, variant: str | None, plan: RangeTestPlan) -> dict[str, Any]:
        named = f" of {VARIANT_LABELS[lora.variant]}" if variant else ""
        opts.report(Stage(f"learning-rate range test{named}: {plan.start:g} to {plan.end:g} over {plan.steps} steps"))
        found = run_range_test(model, inputs.data, lora, runtime, plan, seed=settings.data.seed)
        write_json(run_dir / range_file(variant), found.to_json())
        opts.report(Stage(found.describe()))
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
    for params in opts.first_configurations:
        space = space.including(params)
    return space


RANGE_TEST_SHARE = 0.25
"""The range tests take at most this share of a study's token budget (fewer steps, the same sweep of rates)."""
MIN_RANGE_TEST_STEPS = 8


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


def _scorer(run: StudyRun) -> TrialScorer:
    """What scores the surviving trials on the benchmarks (the forgetting three and the task's own)."""
    from tuner.scoring.evaluation import TrialScorer

    settings, _, study, inputs, runtime, opts = run.fields()
    return TrialScorer(
        study,
        inputs.tokenizer,
        opts.data_dir,
        runtime,
        identity=inputs.identity,
        benchmarks=study_benchmarks(settings.task, opts.allow_code_execution),
        seed=settings.data.seed,
        allow_code_execution=opts.allow_code_execution,
        fixed_items=opts.score_items,
        notify=lambda message: opts.report(Stage(message)),
    )
