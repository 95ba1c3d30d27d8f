"""The Optuna study, top to bottom: set up (run directory, storage, data, base losses), search (the paper's
configurations first, then TPE with median pruning), summarise (trial files, recommendation, scores).

Resumable: the same call on the same run directory continues the study; an interrupted trial runs again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.benchmarks import study_benchmarks
from tuner.errors import AdvisorError
from tuner.events import Reporter, Stage, StudyFinished, StudyStarted, TrialFinished, ignore
from tuner.recommend import recommend
from tuner.records import Recommendation
from tuner.rundir import run_dir_lock, write_json
from tuner.runtime import quiet_libraries
from tuner.settings import StudySettings
from tuner.space import SearchSpace, lora_from_params
from tuner.study_objective import Feasibility, TrialFailed, TrialObjective
from tuner.study_state import (
    StudyState,
    default_storage,
    finished_trials,
    open_storage,
    requeue_interrupted,
    stored_study,
    study_name,
    trial_record,
)
from tuner.study_summary import TRIALS_DIR, study_scores, write_trial, write_trials

if TYPE_CHECKING:
    import optuna

__all__ = ["Feasibility", "run_study"]

STARTUP_TRIALS = 5
"""Trials before TPE models the space: the enqueued paper configurations, then random draws."""


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
    first_configurations: list[dict[str, object]] | None = None,
) -> Recommendation:
    """Run (or resume) a study to its trial count; returns the recommendation (also in recommendation.json).

    `score_items` fixes the items per benchmark when scoring trials (None sizes them to the trial time, 0 turns
    scoring off); `feasible` says why a configuration would not fit the memory budget; `first_configurations`
    run before the paper's (a preset the study starts from).
    """
    import optuna

    from tuner.data import prepare_study_data
    from tuner.models import load_tokenizer, model_identity, resolve_model

    # Set up: the stored study (if any) must match these settings, then the data.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_libraries()
    space = space or SearchSpace()
    if run_dir.exists() and not run_dir.is_dir():
        raise AdvisorError(f"--out {run_dir} exists and is not a directory")
    name = study_name(run_dir, external_storage=storage is not None)
    rdb = open_storage(storage) if storage else None
    stored = stored_study(run_dir, name, rdb)
    if stored is not None:
        StudyState(stored).check_identity(settings, run_dir)
    source = resolve_model(settings.model)
    report(Stage(f"loading tokenizer of {source.describe()}"))
    tokenizer = load_tokenizer(source)
    report(Stage(f"preparing {settings.task} data"))
    budget = settings.budget
    data = prepare_study_data(settings.data, budget.packing(), tokenizer, data_dir)
    identity = model_identity(source)

    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_dir_lock(run_dir):
            study = _open_study(settings, run_dir, name, rdb or open_storage(default_storage(run_dir)), stored)
            state = StudyState(study)
            if state.start(settings):
                for params in [*(first_configurations or []), *space.paper_configurations(settings.task)]:
                    if feasible is None or feasible(lora_from_params(params)) is None:
                        study.enqueue_trial(params, skip_if_exists=True)
            requeue_interrupted(study)
            write_json(run_dir / "settings.json", {**settings.to_json(), "storage": storage or "study.db"})
            (run_dir / TRIALS_DIR).mkdir(exist_ok=True)
            write_trials(run_dir, study)
            finished = len(finished_trials(study))
            report(StudyStarted(settings.trials, finished, str(run_dir)))
            base = state.base_losses
            if base is not None and base.get("model_identity") != identity:
                changed = f"the weights of {settings.model} changed since this study started; use another --out"
                raise AdvisorError(changed)

            # Search: the trials still to run, on the model loaded once.
            from tuner.runtime import pick_runtime, return_freed_memory

            runtime = pick_runtime()
            if settings.trials > finished:
                if settings.memory_budget is not None and not runtime.is_cuda:
                    # Under a budget, the peak the estimate predicts rather than glibc's retained pages: 2.8 GB
                    # instead of 4.7 GB for r=16 at 4 x 256 on SmolLM2-135M, at 125-160 instead of 190-200 tokens/s.
                    return_freed_memory()
                from tuner.evaluation import TrialScorer
                from tuner.models import load_model
                from tuner.trial import heldout_loss

                report(Stage(f"loading {source.describe()} on {runtime.describe()}"))
                model = load_model(source, runtime.device, runtime.dtype)
                if base is None:
                    report(Stage("scoring the base model on held-out target and general text"))
                    base = {
                        "model_identity": identity,
                        "target_loss": heldout_loss(model, data.heldout, budget.batch_size, runtime),
                        "general_loss": heldout_loss(model, data.general, budget.batch_size, runtime),
                    }
                    state.base_losses = base
                scorer = None
                if score_items != 0:
                    scorer = TrialScorer(
                        study,
                        tokenizer,
                        data_dir,
                        runtime,
                        identity=identity,
                        benchmarks=study_benchmarks(settings.task, allow_code_execution),
                        seed=settings.data.seed,
                        allow_code_execution=allow_code_execution,
                        fixed_items=score_items,
                        notify=lambda message: report(Stage(message)),
                    )
                objective = TrialObjective(settings, space, model, data, runtime, base, report, feasible, scorer)

                def trial_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                    record = trial_record(trial)
                    write_trial(run_dir, record)
                    end = trial.datetime_complete
                    seconds = (end - trial.datetime_start).total_seconds() if end and trial.datetime_start else 0.0
                    report(TrialFinished(trial.number, trial.state.name, trial.value, record.reason, seconds))

                study.optimize(
                    objective, n_trials=settings.trials - finished, catch=(TrialFailed,), callbacks=[trial_done]
                )

            # Summarise: the trial files, the recommendation with its evidence, the scores and their plot.
            records = write_trials(run_dir, study)
            base_losses = {k: v for k, v in (base or {}).items() if k != "model_identity"}
            recommendation = recommend(
                settings,
                records,
                base_losses,
                runtime=runtime.describe(),
                run_dir=str(run_dir),
                scores=study_scores(settings, run_dir, state, records),
            )
            write_json(run_dir / "recommendation.json", recommendation.to_json())
            report(StudyFinished(recommendation, records))
            return recommendation
    except BaseException:
        if created and not (run_dir / TRIALS_DIR).exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: leave nothing behind
        raise


def _open_study(
    settings: StudySettings,
    run_dir: Path,
    name: str,
    storage: optuna.storages.RDBStorage,
    stored: optuna.Study | None,
) -> optuna.Study:
    """The study in its storage, created on first use, with a sampler seeded past the trials already there."""
    import optuna

    trials_before = len(stored.trials) if stored is not None else 0
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        # Seeded past the trials already there, so a resumed study draws fresh points.
        sampler=optuna.samplers.TPESampler(
            seed=settings.data.seed + trials_before, n_startup_trials=STARTUP_TRIALS, multivariate=True
        ),
        # The first evaluation is never pruned (Optuna prunes from step n_warmup_steps on):
        # the earliest losses rank learning rates poorly, mid-warm-up.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=settings.budget.eval_steps()[0] + 1),
    )

