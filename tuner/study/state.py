"""The study's storage and what the study keeps there: the Optuna study in its RDB (its URL, name and heartbeats),
its typed attributes, what it has spent, and its interrupted trials requeued.

Every user-attribute key the study writes is spelt here and nowhere else: `StudyState` for the study's own
(settings, base losses, scoring plan, base scores, requeued trials); a trial's are tuner.study.trials'.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.settings import StudySettings
from tuner.study.budget import Spent, StudyBudget, total_spent
from tuner.study.retry import RetryInterrupted, add_retry
from tuner.study.trials import is_interrupted, trial_cost

if TYPE_CHECKING:
    import optuna

STUDY_NAME = "advisor"
"""The study's name in the run directory's own SQLite file."""


def default_storage(run_dir: Path) -> str:
    """The study's SQLite file inside the run directory."""
    return f"sqlite:///{run_dir.resolve() / 'study.db'}"


def study_name(run_dir: Path, external_storage: bool) -> str:
    """The study's name: fixed in the run directory's own file, the run directory's path in a shared database."""
    return f"{STUDY_NAME}:{run_dir.resolve()}" if external_storage else STUDY_NAME


def shown_url(url: str) -> str:
    """The storage's URL as it may be shown: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy reads: hide what looks like a password all the same
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def run_dir_name(study: str) -> str:
    """A run directory's name for study NAME (as `advisor report` names its default --out)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("_") or "study"


def driver_url(url: str) -> str:
    """A PostgreSQL URL with the driver this project installs (psycopg 3) where it names none: SQLAlchemy before 2.1
    would take psycopg2 for a plain postgresql:// URL."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at `server_url` for the block (tests, benches), dropped after
    it with any connection still open to it; yields its URL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sqlalchemy.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


HEARTBEAT_VARIABLE = "ADVISOR_HEARTBEAT_SECONDS"
"""Seconds between a running trial's heartbeats (default HEARTBEAT_SECONDS); the grace period is GRACE_BEATS times."""
HEARTBEAT_SECONDS = 20
GRACE_BEATS = 3
"""A running trial without a heartbeat for this many intervals belongs to a dead worker: it is failed and run again."""
MAX_RETRIES = 3
"""Times a trial whose worker died is run again before it is left failed."""
TABLE_RACE_ATTEMPTS = 5
"""Tries at opening a new database that other workers are setting up at the same moment."""


def heartbeat_seconds() -> int:
    """Seconds between heartbeats: ADVISOR_HEARTBEAT_SECONDS where it is a positive whole number."""
    import os

    text = os.environ.get(HEARTBEAT_VARIABLE, "")
    return int(text) if text.isdigit() and int(text) > 0 else HEARTBEAT_SECONDS


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats: a trial whose worker stops beating for the grace period is failed by
    the next worker that looks, and run again in its slot (tuner.study.retry). AdvisorError for a URL it cannot
    open."""
    import warnings

    import optuna
    import sqlalchemy

    beat = heartbeat_seconds()
    for attempt in range(TABLE_RACE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    driver_url(url),
                    heartbeat_interval=beat,
                    grace_period=GRACE_BEATS * beat,
                    heartbeat_stale_trial_callback=RetryInterrupted(MAX_RETRIES),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers starting at once on a new database race to create Optuna's tables: the loser finds them made.
            if attempt + 1 == TABLE_RACE_ATTEMPTS:
                raise AdvisorError(f"cannot create Optuna's tables in {shown_url(url)!r}") from None
            time.sleep(0.5 * (attempt + 1))
        except Exception as error:  # noqa: BLE001 (SQLAlchemy raises many types for bad URLs and unreachable servers)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise AdvisorError(f"cannot open study storage {shown_url(url)!r}: {first}") from None
    raise AssertionError("unreachable")


def stored_study(run_dir: Path, name: str, storage: optuna.storages.RDBStorage | None) -> optuna.Study | None:
    """The study already in the storage (or in the run directory's own file), or None."""
    import optuna

    if storage is None:
        if not (run_dir / "study.db").is_file():
            return None
        storage = open_storage(default_storage(run_dir))
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def load_named_study(url: str, name: str) -> optuna.Study:
    """The study NAME in the storage at URL; AdvisorError naming the studies there when it holds no such study."""
    import optuna

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise AdvisorError(f"no study storage at {url.removeprefix('sqlite:///')} (no such file)")  # not created
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        there = f"it holds {', '.join(repr(n) for n in names)}" if names else "it holds no study"
        raise AdvisorError(f"no study {name!r} in {shown_url(url)}: {there}") from None


def _plain(value: object) -> Any:
    """The value as it reads back from the storage's JSON."""
    return json.loads(json.dumps(value))


class _StudyAttribute:
    """One of the study's user attributes, read and written as a typed attribute of StudyState."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name  # the attribute's name is its key in the storage

    def __get__(self, state: StudyState, owner: type | None = None) -> Any:
        return state.study.user_attrs.get(self.key)

    def __set__(self, state: StudyState, value: object) -> None:
        state.study.set_user_attr(self.key, _plain(value))


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Each setting that differs, as 'name stored (this worker: wanted)', nested settings by their dotted name."""
    found = []
    for key in sorted(set(stored) | set(wanted)):
        theirs, mine = stored.get(key), wanted.get(key)
        if theirs == mine:
            continue
        if isinstance(theirs, dict) and isinstance(mine, dict):
            found += _differences(theirs, mine, f"{prefix}{key}.")
        else:
            found.append(f"{prefix}{key} {theirs} (this worker: {mine})")
    return found


class StudyState:
    """The study's own attributes, typed: what a resumed study reads back."""

    settings: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The identity of the settings the study was started with."""
    base_losses: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The base model's held-out target and general losses, with the weights' identity."""
    score_plan: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """Items per benchmark for scoring trials, and why; decided once."""
    base_scores: dict[str, dict[str, Any]] | None = _StudyAttribute()  # type: ignore[assignment]
    """The base model's scores on the plan's items (benchmark -> TaskScore as a dict)."""
    base_scores_items: int | None = _StudyAttribute()  # type: ignore[assignment]
    """Items per benchmark of base_scores (None in studies from before it was kept: the plan's limit)."""
    confirmed: dict[str, dict[str, list[list[float]]]] | None = _StudyAttribute()  # type: ignore[assignment]
    """Trial number (as text) -> its per-row losses on the confirm sets, measured after the search."""
    pick_scores: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The pick's scores when only the pick is scored: {trial, items, seconds, estimated_seconds, scores}."""
    requeued: list[int] | None = _StudyAttribute()  # type: ignore[assignment]
    """Interrupted trials whose parameters were enqueued again."""
    starting_points: list[dict[str, Any]] | None = _StudyAttribute()  # type: ignore[assignment]
    """The configurations enqueued first, each {params, rule}: the rule that gave it, said in the advice."""
    range_test: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The learning-rate range test's finding (RangeResult without its curve, which is in range_test.json)."""
    reference: dict[str, dict[str, Any]] | None = _StudyAttribute()  # type: ignore[assignment]
    """The reference arm's runs (full fine-tuning), by rate as text: final held-out losses, confirm-row losses."""
    reference_scores: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The best reference run's benchmark scores on the pick's items: {rate, items, seconds, scores}."""
    variant_range_tests: dict[str, dict[str, Any]] | None = _StudyAttribute()  # type: ignore[assignment]
    """Variant -> its own range test's finding, for each variant searched besides the first guess's."""
    trials: int | None = _StudyAttribute()  # type: ignore[assignment]
    """The trials the study runs to, as its latest run asked: every worker claims trials up to it."""
    search_budget: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The study's budget as its latest run gave it (StudyBudget.to_json(); None: none), which a joining worker must
    share."""
    recommendation: dict[str, Any] | None = _StudyAttribute()  # type: ignore[assignment]
    """The finished study's recommendation (Recommendation.to_json()), for any machine to report."""
    headline: str | None = _StudyAttribute()  # type: ignore[assignment]
    """The recommendation in one line (Recommendation.headline()), whole in optuna-dashboard."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study

    def check_identity(self, settings: StudySettings, run_dir: Path, where: str | None = None) -> None:
        """AdvisorError when the stored study was started with other settings; `where` names a shared study."""
        stored, wanted = self.settings, _plain(settings.identity())
        if stored is not None and stored != wanted:
            differing = ", ".join(sorted(k for k in wanted if stored.get(k) != wanted[k]))
            if where is not None and where != str(run_dir):
                values = "; ".join(_differences(stored, wanted))
                raise AdvisorError(f"{where} was started with other settings ({values}); join it with the same")
            raise AdvisorError(
                f"{run_dir} holds a study with other settings ({differing} differ); "
                "resume it with the same settings or choose another --out"
            )

    def check_joining(self, settings: StudySettings, where: str) -> None:
        """AdvisorError when workers are running this study under another trial count or budget than `settings`
        (a worker that joins it must share them; once none runs, a new run may raise them)."""
        from optuna.trial import TrialState as OptunaState

        if not self.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
            return
        if self.trials is None:
            return
        stored = StudyBudget.from_json(self.search_budget) if self.search_budget else None
        pairs = (("--trials", self.trials, settings.trials), ("--budget", stored, settings.search_budget))
        for label, theirs, mine in pairs:
            if theirs != mine:
                shown = [value.describe() if isinstance(value, StudyBudget) else value for value in (theirs, mine)]
                raise AdvisorError(
                    f"{where} is running with {label} {shown[0] or 'none'} (this worker has {shown[1] or 'none'}); "
                    "join it with the same settings"
                )

    def record_run(self, settings: StudySettings) -> None:
        """Keep the trial count and budget this run asked for: every worker claims trials up to them."""
        self.trials = settings.trials
        self.search_budget = settings.search_budget.to_json() if settings.search_budget is not None else None

    def stored_settings(self) -> StudySettings | None:
        """The settings of the study's latest run, read back from the storage (None before it recorded them)."""
        if self.settings is None or self.trials is None:
            return None
        return StudySettings.from_json({**self.settings, "trials": self.trials, "search_budget": self.search_budget})

    def start(self, settings: StudySettings) -> bool:
        """Record the settings of a new study; False when the study had started before."""
        if self.settings is not None:
            return False
        self.settings = settings.identity()
        return True


def study_spent(study: optuna.Study, tokens_per_step: int) -> Spent:
    """What the study's ended trials and its range test have spent of its budget."""
    from optuna.trial import TrialState as OptunaState

    ended = (OptunaState.COMPLETE, OptunaState.PRUNED, OptunaState.FAIL)
    trials = study.get_trials(deepcopy=False, states=ended)
    state = StudyState(study)
    tests = [state.range_test, *(state.variant_range_tests or {}).values()]
    found = [test for test in tests if test]
    range_cost = (sum(int(t["tokens"]) for t in found), sum(float(t["seconds"]) for t in found)) if found else None
    return total_spent((trial_cost(t, tokens_per_step) for t in trials), range_cost)


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark trials left running by a killed process as failed (interrupted) and run each again in its slot, with
    its parameters and seed; returns how many were enqueued."""
    from optuna.trial import TrialState as OptunaState

    for trial in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        study.tell(trial.number, state=OptunaState.FAIL)
    state = StudyState(study)
    requeued = set(state.requeued or [])
    for trial in study.get_trials(deepcopy=False):  # trials Optuna's heartbeat already enqueued again
        requeued.update(trial.system_attrs.get("retry_history", []))
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if is_interrupted(trial) and trial.number not in requeued:
            add_retry(study, trial)
            count += 1
            requeued.add(trial.number)
    state.requeued = sorted(requeued)
    return count
