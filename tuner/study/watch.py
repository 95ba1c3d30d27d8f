"""A study shared through its storage, watched from any machine: what changed since the last look, as the tuner's
events, so that a display fills as it does for a study it runs itself.

The watcher only reads: the workers running the study write every trial and, once one of them has summarised it,
the recommendation (tuner.study.state).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tuner.errors import AdvisorError
from tuner.events import (
    Event,
    StudyFinished,
    StudyStarted,
    TrialEvaluated,
    TrialFinished,
    TrialProgress,
    TrialScored,
    TrialStarted,
)
from tuner.records import Recommendation, TrialRecord
from tuner.scoring.benchmarks import LEARNING_TASK, forgetting_score
from tuner.settings import StudySettings
from tuner.study.retry import INTERRUPTED  # the reason a watched trial ends with when its worker died
from tuner.study.space import lora_from_params
from tuner.study.state import StudyState, load_named_study, shown_url
from tuner.study.trials import is_interrupted, trial_cost, trial_record

if TYPE_CHECKING:
    import optuna

__all__ = ["INTERRUPTED", "StudyWatcher", "open_watched", "watched_settings"]


def watched_settings(study: optuna.Study, url: str, name: str) -> StudySettings:
    """The settings of the advisor's study as its latest run recorded them; AdvisorError for a study the advisor
    did not start."""
    settings = StudyState(study).stored_settings()
    if settings is None:
        raise AdvisorError(f"study {name!r} in {shown_url(url)} was not started by the advisor (it has no settings)")
    return settings


def open_watched(url: str, name: str) -> StudySettings:
    """The settings of study NAME in the storage at URL; AdvisorError (one line) for an unreachable storage, an
    unknown study or one the advisor did not start."""
    return watched_settings(load_named_study(url, name), url, name)


class StudyWatcher:
    """Study NAME in the storage at URL, looked at again on each `poll()`: each look returns the events for what
    changed since the one before, and reads the trials once."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.study = load_named_study(url, name)
        self.settings = watched_settings(self.study, url, name)
        self.polled = False
        self.started: set[int] = set()
        """Trials reported as started (or ended before the first poll)."""
        self.ended: set[int] = set()
        """Trials reported as ended (or ended before the first poll)."""
        self.finished = False
        """Whether the study's recommendation was reported: the watch is over."""

    def describe(self) -> str:
        """The study and where it is stored, as text (without the storage's password)."""
        return f"study {self.name!r} at {shown_url(self.url)}"

    def poll(self) -> list[Event]:
        """The events for what changed since the last poll: the study started (first poll), trials started and
        ended, the study finished (then the watch is over)."""
        from optuna.trial import TrialState as OptunaState

        from tuner.study.trial_objective import Spending

        if self.finished:
            return []
        # The recommendation first: it is stored after the last trial ended, so the trials read next hold them all.
        stored = StudyState(self.study).recommendation
        trials = sorted(self.study.get_trials(deepcopy=False), key=lambda trial: trial.number)
        ended = [t for t in trials if t.state.is_finished()]
        finished = [t for t in ended if not is_interrupted(t)]
        spending = Spending(self.settings, self.study)
        events: list[Event] = []
        if not self.polled:  # the trials that ended before are counted, not replayed
            self.polled = True
            self.ended = {t.number for t in ended}
            self.started.update(self.ended)
            where = self.describe()
            events.append(StudyStarted(self.settings.trials, len(finished), where, *spending.describe()))
        new = [t for t in ended if t.number not in self.ended]
        spent = spending.describe() if new else (None, None)  # one more read of the trials, only when some ended
        for trial in new:
            self.ended.add(trial.number)
            if is_interrupted(trial) and trial.number not in self.started:
                continue  # killed before anyone saw it run: it runs again under a new number
            if trial.number not in self.started:
                events.append(self._started(trial, len(self.ended)))
            events.extend(self._ended(trial, *spent))
        for trial in trials:
            if trial.state == OptunaState.RUNNING and trial.number not in self.started and _drawn(trial.params):
                events.append(self._started(trial, len(self.ended) + 1))
        if stored is not None:
            recommendation = Recommendation.from_json(stored)
            records = [trial_record(t) for t in finished]
            events.extend(self._pick_scored(recommendation, records))
            events.append(StudyFinished(recommendation, records))
            self.finished = True
        return events

    def _pick_scored(self, recommendation: Recommendation, records: list[TrialRecord]) -> list[TrialScored]:
        """The pick's scores where it was scored after the search (its trial stored none), as the worker that
        summarised the study reported them."""
        pick, scores = recommendation.trial, recommendation.scores
        figures = (scores.trials or {}).get(str(pick)) if scores is not None else None
        if pick is None or not figures or any(r.number == pick and r.scores for r in records):
            return []
        learning = LEARNING_TASK.get(self.settings.task)
        return [TrialScored(pick, figures, forgetting_score(figures), figures.get(learning) if learning else None)]

    def _started(self, trial: optuna.trial.FrozenTrial, index: int) -> TrialStarted:
        self.started.add(trial.number)
        settings = self.settings
        total = settings.trials if settings.search_budget is None else 0  # a budget, not a count, ends the study
        return TrialStarted(trial.number, index, total, settings.budget.steps(), dict(trial.params))

    def _ended(self, trial: optuna.trial.FrozenTrial, spent: str | None, share: float | None) -> list[Event]:
        """A trial's end as the worker that ran it reported it: its training curve, evaluations, scores, outcome."""
        _, seconds = trial_cost(trial, 1)
        if is_interrupted(trial):
            return [TrialFinished(trial.number, trial.state.name, None, INTERRUPTED, seconds, spent, share)]
        record = trial_record(trial)
        steps, speed = self.settings.budget.steps(), record.tokens_per_second or 0.0
        curve = record.train_curve  # stored when the trial ends: drawn then, as it was trained
        reported: list[Event] = [TrialProgress(trial.number, int(step), steps, loss, speed) for step, loss in curve]
        for step, target, general in record.evaluations:
            objective = trial.intermediate_values.get(int(step), math.nan)
            reported.append(TrialEvaluated(trial.number, int(step), target, general, objective))
        if record.scores:
            reported.append(TrialScored(trial.number, record.scores, record.general_score, record.learning_score))
        reported.append(TrialFinished(trial.number, record.state, record.value, record.reason, seconds, spent, share))
        return reported


def _drawn(params: dict[str, object]) -> bool:
    """Whether a running trial has drawn its whole configuration: its worker draws one parameter at a time."""
    try:
        lora_from_params(params)
    except KeyError:
        return False
    return "learning_rate" in params
