"""How a study survives a kill: every trial holds a slot in the study's order, a trial that was interrupted is run
again in its slot (same configuration, same seed, before any later slot), and successive halving never counts a
failed trial's rungs. A resumed study thus makes the decisions the uninterrupted one makes.

A slot is the trial's place among the study's first tries: trial numbers, less the retries before it. It seeds the
trial's training and the sampler's draw for it (tuner.study.search), so a retry trains and draws as its original did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

SLOT = "slot"
"""A trial's user attribute: its slot (set when it is claimed; a retry is created with its original's)."""
RETRY_OF = "retry_of"
"""A retry's user attribute: the number of the interrupted trial it runs again."""
FIXED_PARAMS = "fixed_params"
"""Optuna's system attribute for an enqueued trial's parameters (carried by its retry)."""
INTERRUPTED = (
    "interrupted: its process was stopped (killed, SIGTERM, or its worker lost) before the trial ended; "
    "the trial runs again with the same configuration and seed"
)
"""Why an interrupted trial failed, in its record."""


def trial_slot(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The trial's slot: as stored, else its number (trials from before slots were kept, and the uninterrupted
    study's, where the two agree)."""
    attrs = trial.user_attrs
    return int(attrs[SLOT]) if SLOT in attrs else int(trial.number)


def is_retry(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial runs an interrupted trial again (here, or under Optuna's own retry callback)."""
    return RETRY_OF in trial.user_attrs or "failed_trial" in trial.system_attrs


def next_fresh_slot(trials: list[optuna.trial.FrozenTrial]) -> int:
    """The slot of a trial the study has not tried before: one past every trial that is not a retry."""
    return sum(1 for trial in trials if not is_retry(trial))


def add_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue a retry of an interrupted trial: its parameters (or the enqueued ones it had not drawn yet), its slot,
    and nothing it measured (a rung it reached before it died is not a result)."""
    import optuna

    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    system: dict[str, Any] = {"failed_trial": history[0], "retry_history": history}
    if FIXED_PARAMS in trial.system_attrs:
        system[FIXED_PARAMS] = trial.system_attrs[FIXED_PARAMS]
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=dict(trial.params),
            distributions=dict(trial.distributions),
            user_attrs={SLOT: trial_slot(trial), RETRY_OF: trial.number},
            system_attrs=system,
        )
    )


class RetryInterrupted:
    """Optuna's stale-trial callback: a trial whose worker stopped beating is run again in its slot (add_retry),
    at most `max_retry` times."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(trial.system_attrs.get("retry_history", [])) < self.max_retry:
            add_retry(study, trial)


def claim_in_slot_order(study: optuna.Study, reseed: Any | None) -> optuna.Trial:
    """Start the study's next trial: the waiting trial with the lowest slot (a retry runs where its original ran,
    before the trials enqueued after it), else a new one in the next fresh slot; `reseed(slot)` seeds the sampler
    for it first. Called under the study's claim lock."""
    import optuna
    from optuna.trial import TrialState as OptunaState

    trials = study.get_trials(deepcopy=False)
    waiting = sorted((t for t in trials if t.state == OptunaState.WAITING), key=lambda t: (trial_slot(t), t.number))
    for candidate in waiting:
        if reseed is not None:
            reseed(trial_slot(candidate))
        # Study.ask pops the waiting trial with the lowest number; the slot decides here (Optuna's own pop).
        if study._storage.set_trial_state_values(candidate._trial_id, state=OptunaState.RUNNING):
            study._thread_local.cached_all_trials = None
            trial = optuna.Trial(study, candidate._trial_id)
            trial.set_user_attr(SLOT, trial_slot(candidate))
            return trial
    slot = next_fresh_slot(trials)
    if reseed is not None:
        reseed(slot)
    trial = study.ask()
    trial.set_user_attr(SLOT, slot)
    return trial


class _WithResults:
    """The study as a pruner sees it: only trials that ended with results or still run (no failed trial)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        from optuna.trial import TrialState as OptunaState

        found = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in found if t.state != OptunaState.FAIL]


def results_only(pruner_class: type) -> type:
    """`pruner_class` deciding on the trials with results alone: a failed trial's rung values (a killed trial
    reached a rung before it died) never prune another."""

    class ResultsOnly(pruner_class):  # type: ignore[misc, valid-type]
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return bool(super().prune(_WithResults(study), trial))

    ResultsOnly.__name__ = ResultsOnly.__qualname__ = f"ResultsOnly{pruner_class.__name__}"
    return ResultsOnly
