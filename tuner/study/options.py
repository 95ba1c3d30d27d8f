"""How a study runs, besides the settings that identify it: `StudyOptions`, with the search strategies it is given
(optuna's shape: a sampler and a pruner passed in) and their defaults, TPE seeded per trial slot and successive
halving at the trials' evaluation steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.defaults import HALVING_RATE
from tuner.events import Reporter, ignore
from tuner.settings import TrainBudget
from tuner.study.range_test import RangeTestPlan
from tuner.study.space import SearchSpace

if TYPE_CHECKING:
    import optuna

STARTUP_TRIALS = 5
"""Trials before TPE models the space: the enqueued starting points, then random draws."""

SamplerFactory = Callable[[int, bool], "optuna.samplers.BaseSampler"]
"""The sampler that draws one trial: from its seed (the study's seed plus the trial's slot, so that a resumed study
draws what the uninterrupted one drew) and whether other workers draw at the same time."""
PrunerFactory = Callable[[TrainBudget], "optuna.pruners.BasePruner"]
"""The study's pruner, from the trials' training budget (whose evaluation steps are the points it prunes at)."""


def tpe_sampler(seed: int, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """TPE over the space's parameters jointly, after STARTUP_TRIALS; with `parallel`, trials still running count as
    bad (constant liar), so that workers drawing at once spread out."""
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True, constant_liar=parallel
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


@dataclass(frozen=True)
class StudyOptions:
    """How a study runs, besides the settings that identify it (its memory budget is one of those: the study narrows
    its space to it)."""

    data_dir: Path | None = None
    """The local mirror (None: the hub)."""
    storage: str | None = None
    """An Optuna RDB URL shared with other studies (None: RUN_DIR/study.db)."""
    space: SearchSpace = field(default_factory=SearchSpace)
    """The search space, before the memory budget and the range test narrow it."""
    report: Reporter = ignore
    """Receives the study's events (stages, trials started and ended, the recommendation)."""
    allow_code_execution: bool = False
    """HumanEval may run the model's code (in the sandbox) when scoring trials."""
    score_items: int | None = None
    """Items per benchmark when scoring trials: None sizes them to the trial time, 0 turns scoring off."""
    first_configurations: tuple[dict[str, Any], ...] = ()
    """Parameters tried before the starting points (a preset the study starts from); the space is widened to hold
    them."""
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
    sampler: SamplerFactory = tpe_sampler
    """The sampler for each trial's draw, from the trial's seed and whether workers draw at once."""
    pruner: PrunerFactory = halving_pruner
    """The pruner, from the trials' training budget."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_configurations", tuple(self.first_configurations))  # a list given: kept whole

    @property
    def parallel(self) -> bool:
        """Whether other workers may run this study's trials at the same time."""
        return self.storage is not None or self.worker or self.spawn is not None
