"""The study's one entry, `run_study`, and the `Study` it runs top to bottom like a training recipe: set up
(tuner.study.setup: the memory budget, the stored study, the data, the run directory and its storage), search
(tuner.study.search: a learning-rate range test, the starting points from rules that scale, then the sampler and the
pruner on the model loaded once, until the trials or the study's budget are spent), summarise
(tuner.study.summarise: the finalists re-measured, the recommendation with its evidence, the pick scored, the
reference arm).

Resumable: the same call on the same run directory continues the study; an interrupted trial runs again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.events import Stage
from tuner.scoring.benchmarks import study_benchmarks
from tuner.settings import StudySettings
from tuner.study.options import StudyOptions
from tuner.study.search import search
from tuner.study.setup import StudyInputs, set_up
from tuner.study.state import StudyState
from tuner.study.summarise import summarise

if TYPE_CHECKING:
    import optuna
    from transformers import PreTrainedModel

    from tuner.memory.bounds import Checkpointing
    from tuner.records import Recommendation
    from tuner.scoring.evaluation import TrialScorer
    from tuner.settings import LoraSettings
    from tuner.study.loop import StudyLock
    from tuner.study.space import SearchSpace
    from tuner.study.trial_objective import Feasibility
    from tuner.training.runtime import Runtime

__all__ = ["Study", "StudyOptions", "run_study"]


def run_study(
    settings: StudySettings,
    run_dir: Path,
    options: StudyOptions = StudyOptions(),  # noqa: B008 (frozen)
) -> Recommendation | None:
    """Run (or resume, or join) a study to its trial count, in the search space its memory budget allows; returns
    the recommendation (also in recommendation.json and in the storage), or None for a worker, which only runs
    trials."""
    study = Study(settings, run_dir, options)
    with study.setup():  # the run directory is held until the study ends
        study.search()
        if options.worker:
            return None
        return study.summarise()


class Study:
    """This process's run of a study: the settings, run directory and options it was given, and what each step
    leaves for the next (set-up: the space, the Optuna study, the inputs, the runtime; search: the model and the
    base model's losses)."""

    space: SearchSpace
    """The search space within the memory budget, widened to hold the first configurations (the range test then
    narrows its rates for the trials)."""
    feasible: Feasibility | None
    """Why a configuration would not fit the memory budget (None when it fits); None without a budget."""
    optuna_study: optuna.Study
    """The study in its storage."""
    lock: StudyLock
    """The study's named locks ("setup", "claim", "finish"), shared with every worker."""
    inputs: StudyInputs
    """The model's source and identity, its tokenizer and the packed data."""
    runtime: Runtime
    """Where this process trains and measures."""
    model: PreTrainedModel | None = None
    """The model as the search left it (loaded once for the trials), or as re-measuring the finalists loaded it;
    16-bit under --quantize search."""
    quantized_model: PreTrainedModel | None = None
    """Under --quantize search, the 4-bit base the QLoRA trials train on (loaded at the first, then held beside
    `model`)."""
    checkpointing: Checkpointing | None = None
    """Whether a configuration fits the memory budget only with gradient checkpointing (None: no budget)."""
    quantize: str | None = None
    """The trials' base weights: 'nf4' (QLoRA, asked for or the only thing fitting the memory budget), 'search'
    (each trial draws 16 or 4 bits: --quantize search where both fit) or None (16-bit)."""
    base_losses: dict[str, Any] | None = None
    """The base model's held-out losses, as set-up found them stored or the search measured them."""

    def __init__(self, settings: StudySettings, run_dir: Path, options: StudyOptions) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.options = options

    def setup(self) -> contextlib.AbstractContextManager[None]:
        """Set the study up and hold its run directory for the block (tuner.study.setup)."""
        return set_up(self)

    def search(self) -> None:
        """Run the trials still to run while the budget lasts (tuner.study.search)."""
        search(self)

    def summarise(self) -> Recommendation:
        """The recommendation with its evidence, written to the run directory and the storage
        (tuner.study.summarise)."""
        return summarise(self)

    @property
    def state(self) -> StudyState:
        """The study's own attributes in its storage."""
        return StudyState(self.optuna_study)

    def sampler(self, slot: int) -> optuna.samplers.BaseSampler:
        """The options' sampler for the trial in `slot`, seeded by the study's seed plus the slot."""
        return self.options.sampler(self.settings.data.seed + slot, self.options.parallel)

    def load_model(self, purpose: str = "", quantize: str | None = None) -> PreTrainedModel:
        """The model on this process's device, saying what for (" to score the pick"); in the study's precision, or
        under --quantize search in `quantize`'s ('nf4' or None: 16-bit)."""
        from tuner.models.load import load_model

        kind = quantize if self.quantize == "search" else self.quantize
        what = " in 4-bit NF4" if self.quantize == "search" and kind else ""
        where = f"{self.inputs.source.describe()}{what} on {self.runtime.describe()}"
        self.options.report(Stage(f"loading {where}{purpose}"))
        return load_model(self.inputs.source, self.runtime.device, self.runtime.dtype, kind)

    def base_for(self, quantize: str | None, purpose: str = "") -> PreTrainedModel:
        """The base a trial trains on for the weights it drew: under --quantize search the 4-bit one for 'nf4'
        (loaded once, then held beside the 16-bit one), else `model` (loaded where it is not yet)."""
        if self.quantize == "search" and quantize == "nf4":
            if self.quantized_model is None:
                self.quantized_model = self.load_model(purpose, "nf4")
            return self.quantized_model
        if self.model is None:
            self.model = self.load_model(purpose)
        return self.model

    def needs_checkpointing(self, lora: LoraSettings, drawn: object = None) -> bool:
        """Whether a configuration fits the memory budget only with gradient checkpointing (its runs then use it);
        `drawn` is the base weights its trial drew under --quantize search."""
        return self.checkpointing is not None and self.checkpointing(lora, drawn)

    def scorer(self) -> TrialScorer:
        """What scores the surviving trials on the benchmarks (the forgetting three and the task's own)."""
        from tuner.scoring.evaluation import TrialScorer

        options = self.options
        return TrialScorer(
            self.optuna_study,
            self.inputs.tokenizer,
            options.data_dir,
            self.runtime,
            identity=self.inputs.identity,
            benchmarks=study_benchmarks(self.settings.task, options.allow_code_execution),
            seed=self.settings.data.seed,
            allow_code_execution=options.allow_code_execution,
            fixed_items=options.score_items,
            notify=lambda message: options.report(Stage(message)),
        )
