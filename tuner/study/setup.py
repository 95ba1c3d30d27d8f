"""A study's set-up: the search space within its memory budget, the stored study checked against these settings,
the model's source and the data prepared before anything is written; then the run directory held, the Optuna study
opened (created on first use, its starting points enqueued), its files written and the other workers started."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.encode import DATA_FILE
from tuner.errors import AdvisorError
from tuner.events import DataFound, Stage, StudyStarted
from tuner.memory.bounds import memory_bounds, study_quantize
from tuner.memory.sizes import format_size
from tuner.rundir import run_dir_lock, write_json
from tuner.study.loop import StudyLock
from tuner.study.priors import starting_points
from tuner.study.space import lora_from_params
from tuner.study.state import (
    StudyState,
    default_storage,
    open_storage,
    requeue_interrupted,
    stored_study,
    study_name,
)
from tuner.study.summary import TRIALS_DIR, write_trials
from tuner.study.trial_objective import Spending
from tuner.study.trials import finished_trials
from tuner.training.runtime import pick_runtime, quiet_libraries

if TYPE_CHECKING:
    import optuna
    from transformers import PreTrainedTokenizerBase

    from tuner.data.prepare import StudyData
    from tuner.models.load import ModelSource
    from tuner.study.run import Study


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


@contextlib.contextmanager
def set_up(study: Study) -> Iterator[None]:
    """Set the study up, then hold its run directory for the block (the search and the summary): the stored study
    must match these settings, and the data is prepared before anything is written."""
    settings, run_dir, options = study.settings, study.run_dir, study.options
    study.quantize = _quantize(study)
    bounds = memory_bounds(settings, options.space, quantize=study.quantize)
    study.space, study.feasible, study.checkpointing = bounds
    for params in options.first_configurations:
        study.space = study.space.including(params)
    if options.study is not None and options.storage is None:
        raise AdvisorError("--study names a study in a shared storage: give its --storage URL too")
    name = options.study or study_name(run_dir, external_storage=options.storage is not None)
    url = options.storage or default_storage(run_dir)
    shared = open_storage(options.storage) if options.storage else None
    _check_stored(study, name, shared)
    study.inputs = _prepare_inputs(study)
    study.lock = StudyLock(url, name)
    with _run_directory(run_dir, hold=not options.worker):
        study.optuna_study = _open_study(study, name, shared or open_storage(url))
        _start(study)
        (run_dir / TRIALS_DIR).mkdir(exist_ok=True)
        if not options.worker:
            write_json(run_dir / "settings.json", {**settings.to_json(), "storage": options.storage or "study.db"})
            if study.inputs.data.counts is not None:  # the format found and what was trained on, for the exports
                write_json(run_dir / DATA_FILE, asdict(study.inputs.data.counts))
            write_trials(run_dir, study.optuna_study)
        finished = len(finished_trials(study.optuna_study))
        spending = Spending(settings, study.optuna_study)
        options.report(StudyStarted(settings.trials, finished, str(run_dir), *spending.describe()))
        study.base_losses = study.state.base_losses
        if study.base_losses is not None and study.base_losses.get("model_identity") != study.inputs.identity:
            changed = f"the weights of {settings.model} changed since this study started; use another --out"
            raise AdvisorError(changed)
        if options.spawn is not None:
            options.spawn()  # the other workers, to their end; this process then runs what they left
        study.runtime = pick_runtime()
        yield


def _quantize(study: Study) -> str | None:
    """The trials' base weights ('nf4': QLoRA; 'search': each trial draws 16 or 4 bits; None: 16-bit), said when
    the budget chose them; AdvisorError where bitsandbytes cannot train them here or the searched variants include
    PiSSA."""
    from tuner.models.quantize import check_quantize
    from tuner.study.space import SearchSpace

    settings, options = study.settings, study.options
    device = pick_runtime().device.type
    quantize = study_quantize(settings, options.space or SearchSpace(), device)
    if quantize is None:
        if settings.quantize == "search":
            budget = format_size(settings.memory_budget or 0)
            options.report(Stage(f"16-bit and 4-bit weights do not fit {budget} side by side: every trial is 16-bit"))
        return None
    check_quantize(device)
    if options.reference == "full" and quantize == "nf4":
        raise AdvisorError("--reference full trains every weight, which QLoRA's 4-bit base cannot: drop one of them")
    if "pissa" in (options.space or SearchSpace()).variants:
        raise AdvisorError("PiSSA rewrites the base weights it starts from, which QLoRA keeps in 4 bits: drop one")
    budget = format_size(settings.memory_budget or 0)
    if settings.quantize is None:
        options.report(Stage(f"only QLoRA (4-bit NF4 weights) fits the memory budget of {budget}: trials use it"))
    elif settings.quantize == "search" and quantize == "nf4":
        options.report(Stage(f"only QLoRA fits the memory budget of {budget}: every trial uses it, nothing to compare"))
    return quantize


def _check_stored(study: Study, name: str, storage: optuna.storages.RDBStorage | None) -> None:
    """Refuse the study already stored for this run directory (or under --study) when it was started with other
    settings, or when its workers run it to another trial count or budget."""
    import optuna

    settings, run_dir, options = study.settings, study.run_dir, study.options
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if run_dir.exists() and not run_dir.is_dir():
        raise AdvisorError(f"--out {run_dir} exists and is not a directory")
    stored = stored_study(run_dir, name, storage)
    if stored is not None:
        where = f"study {options.study!r}" if options.study is not None else str(run_dir)
        state = StudyState(stored)
        state.check_identity(settings, run_dir, where)
        if options.study is not None and not options.worker:
            state.check_joining(settings, where)


def _prepare_inputs(study: Study) -> StudyInputs:
    """The model's source, identity and width, its tokenizer, and the task and general text packed once."""
    from tuner.data.load import task_records
    from tuner.data.prepare import prepare_study_data
    from tuner.data.preview import summary_line
    from tuner.models.load import load_tokenizer, model_config, model_identity, resolve_model

    settings, options = study.settings, study.options
    quiet_libraries()
    source = resolve_model(settings.model)
    task_records(settings.data, options.data_dir)  # the data's own errors before any loading (read once per process)
    options.report(Stage(f"loading tokenizer of {source.describe()}"))
    tokenizer = load_tokenizer(source)
    options.report(Stage(f"preparing {settings.task} data"))
    data = prepare_study_data(settings.data, settings.budget.packing(), tokenizer, options.data_dir)
    if data.counts is not None:
        options.report(DataFound(summary_line(data.counts, data.train.seq_len)))
    config = model_config(source)
    width = next(
        (config[key] for key in ("hidden_size", "n_embd", "d_model") if isinstance(config.get(key), int)), None
    )
    # A 4-bit base scores as itself; under --quantize search every trial is measured against the 16-bit base.
    identity = model_identity(source) + ("+nf4" if study.quantize == "nf4" else "")
    return StudyInputs(source, identity, tokenizer, data, width, str(config.get("model_type", "")))


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


def _open_study(study: Study, name: str, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The study in its storage, created on first use, with the options' sampler and pruner."""
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=study.sampler(0),  # seeded again for each trial's slot when it is claimed
        pruner=study.options.pruner(study.settings.budget),
    )


def _start(study: Study) -> None:
    """Under the set-up lock: a new study records its settings and enqueues the first configurations and the
    starting points that fit the memory budget; the run records its trial count and budget; a study in its own file
    runs again the trials its killed process left running."""
    settings, options, optuna_study = study.settings, study.options, study.optuna_study
    state = study.state
    with study.lock("setup"):
        if state.start(settings):
            points = starting_points(study.space, study.inputs.hidden_size, study.inputs.model_type, settings.task)
            state.starting_points = [point.to_json() for point in points]
            configurations = [*options.first_configurations, *(point.params for point in points)]
            if study.space.quantize and points:  # the guess on both bases: a paired measure of what 4 bits cost
                configurations.insert(len(options.first_configurations) + 1, {**points[0].params, "quantize": "nf4"})
            for params in map(study.space.fitting, configurations):
                if study.feasible is None or study.feasible(lora_from_params(params), params.get("quantize")) is None:
                    optuna_study.enqueue_trial(params, skip_if_exists=True)
        if not options.worker:
            state.record_run(settings)
        if options.storage is None and not options.worker:  # its own file, before any worker starts: a trial left
            requeue_interrupted(optuna_study)  # running was killed with the process that ran it
