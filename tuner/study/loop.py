"""How a worker claims and runs trials, alone or beside others sharing the study's storage.

Workers (processes on one machine, or on many through PostgreSQL) coordinate only through the storage: a named
lock around the few steps that must not interleave (setting the study up, claiming a trial, summarising it), a
claim that never starts more trials than the study runs to, and Optuna's heartbeat, under which a trial whose
worker died is failed and enqueued again (tuner.study.state.open_storage).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.study.retry import claim_in_slot_order
from tuner.study.state import driver_url
from tuner.study.trials import is_finished

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

POLL_SECONDS = 1.0
"""How often a worker with nothing to claim looks again (for trials that end, or whose worker died)."""


def worker_name() -> str:
    """This worker as a trial records it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class StudyLock:
    """A lock per purpose on one study, held across every worker of it: PostgreSQL's advisory locks, MySQL's named
    locks, or a file beside a SQLite database (whose workers share one machine). A server's connections come from
    one pool per lock object (an advisory lock is the connection's: it is taken and given back on the same one)."""

    url: str
    study: str

    @functools.cached_property
    def _engine(self) -> sqlalchemy.engine.Engine:
        import sqlalchemy

        return sqlalchemy.create_engine(driver_url(self.url), pool_size=1, pool_pre_ping=True)

    def key(self, purpose: str) -> str:
        return f"lora-advisor:{self.study}:{purpose}"

    @contextlib.contextmanager
    def __call__(self, purpose: str) -> Iterator[None]:
        """Hold the lock for `purpose` ('setup', 'claim', 'finish'), waiting for it as long as another holds it."""
        url = driver_url(self.url)
        key = self.key(purpose)
        if url.startswith("sqlite"):
            with self._file_lock(url, key):
                yield
            return
        import sqlalchemy

        engine = self._engine
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
                take, give = "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)"
                connection.execute(sqlalchemy.text(take), {"k": number})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text(give), {"k": number})
            elif engine.dialect.name in ("mysql", "mariadb"):
                name = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()  # within MySQL's 64 characters
                connection.execute(sqlalchemy.text("SELECT GET_LOCK(:k, -1)"), {"k": name})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": name})
            else:
                yield  # no shared lock known: one worker at a time

    @staticmethod
    @contextlib.contextmanager
    def _file_lock(url: str, key: str) -> Iterator[None]:
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":  # an in-memory database: one process
            yield
            return
        lock = Path(path).with_name(f".{Path(path).name}.{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}")
        while True:
            handle = open(lock, "w")  # held across the yield, closed below
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:  # removed by its last holder: a process that waited on the removed file takes the new one instead
                current = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            handle.close()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()  # no lock file left behind; removed while held, so no holder shares it
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


@dataclass
class Claim:
    """What a worker may do next: run a new trial, wait for running ones, or stop."""

    trial: optuna.Trial | None
    done: bool


def claim_trial(
    study: optuna.Study,
    target: int,
    budget_left: Callable[[], bool],
    lock: StudyLock,
    *,
    wait_for_running: bool,
    reseed: Callable[[int], None] | None = None,
) -> Claim:
    """Claim the next trial under the claim lock: none once the trials that ended reach `target` or the budget is
    spent (done then, unless `wait_for_running` and some still run), and none while ended plus running trials
    already make `target` (wait: one may end pruned-free or die and be retried). A retry is claimed before any later
    slot; `reseed(slot)` gives the sampler a seed of its own for the trial's slot (tuner.study.retry)."""
    import warnings

    import optuna

    with lock("claim"), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Study.ask warns that heartbeats are meant for Study.optimize: run_claimed beats as it does.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, and enqueued again
        trials = study.get_trials(deepcopy=False)  # read once for the counts and the seed
        finished = sum(1 for t in trials if is_finished(t))
        running = sum(1 for t in trials if t.state == optuna.trial.TrialState.RUNNING)
        if finished >= target or not budget_left():
            return Claim(None, done=not (wait_for_running and running))
        if finished + running >= target:
            return Claim(None, done=False)
        return Claim(claim_in_slot_order(study, reseed), done=False)


def run_claimed(
    study: optuna.Study,
    trial: optuna.Trial,
    objective: Callable[[optuna.Trial], float],
    failed: tuple[type[Exception], ...],
) -> optuna.trial.FrozenTrial:
    """Run one claimed trial under Optuna's heartbeat and tell the study how it ended (as Study.optimize does):
    complete, pruned, or failed for one of the `failed` exceptions; any other exception fails it and goes on up."""
    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread  # Study.optimize's own heartbeat
    from optuna.trial import TrialState

    trial.set_user_attr("worker", worker_name())
    with get_heartbeat_thread(trial._trial_id, study._storage):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except failed:
            return study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
    return study.tell(trial, value)


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    target: Callable[[], int],
    budget_left: Callable[[], bool],
    lock: StudyLock,
    *,
    failed: tuple[type[Exception], ...],
    after: Callable[[optuna.trial.FrozenTrial], None],
    wait_for_running: bool,
    reseed: Callable[[int], None] | None = None,
) -> None:
    """Claim and run trials until the study has its trials or its budget is spent; `after` sees each trial this
    worker ended. With `wait_for_running`, return only when no other worker's trial runs either (the one that
    summarises the study waits for every trial)."""
    while True:
        claim = claim_trial(study, target(), budget_left, lock, wait_for_running=wait_for_running, reseed=reseed)
        if claim.done:
            return
        if claim.trial is None:
            time.sleep(POLL_SECONDS)
            continue
        after(run_claimed(study, claim.trial, objective, failed))
