"""The claim loop without a model: fake objectives through Optuna's ask/tell, several workers on one storage."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from tuner.study.loop import StudyLock, claim_trial, run_trials
from tuner.study.state import StudyState, open_storage, requeue_interrupted
from tuner.study.trials import finished_trials


def shared_study(url: str, name: str = "shared") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=open_storage(url), load_if_exists=True)


def test_three_workers_on_one_file_end_exactly_the_target(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    shared_study(url)
    ran: list[tuple[str, int]] = []

    def worker(label: str) -> None:
        study = shared_study(url)  # each worker opens the storage itself, as a process would

        def objective(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", 0.0, 1.0)
            time.sleep(0.05)
            return x

        run_trials(
            study,
            objective,
            lambda: 7,
            lambda: True,
            StudyLock(url, "shared"),
            failed=(),
            after=lambda t: ran.append((label, t.number)),
            wait_for_running=label == "a",
        )

    threads = [threading.Thread(target=worker, args=(label,)) for label in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    study = shared_study(url)
    assert len(study.trials) == 7 and len(finished_trials(study)) == 7
    assert sorted(number for _, number in ran) == list(range(7))  # each trial ran once, by one worker
    assert len({label for label, _ in ran}) >= 2


def test_nothing_is_claimed_past_the_target_while_trials_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = shared_study(url)
    lock = StudyLock(url, "shared")
    first = claim_trial(study, 2, lambda: True, lock, wait_for_running=False)
    second = claim_trial(study, 2, lambda: True, lock, wait_for_running=False)
    assert first.trial is not None and second.trial is not None
    full = claim_trial(study, 2, lambda: True, lock, wait_for_running=False)
    assert full.trial is None and not full.done  # two running make the target: wait, one may die
    study.tell(first.trial, 1.0)
    study.tell(second.trial, 2.0)
    assert claim_trial(study, 2, lambda: True, lock, wait_for_running=False).done
    spent = claim_trial(study, 5, lambda: False, lock, wait_for_running=False)
    assert spent.trial is None and spent.done  # the budget is spent


def test_the_summarising_worker_waits_for_running_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = shared_study(url)
    lock = StudyLock(url, "shared")
    done = study.ask()
    study.tell(done, 1.0)
    running = study.ask()
    assert not claim_trial(study, 1, lambda: True, lock, wait_for_running=True).done
    assert claim_trial(study, 1, lambda: True, lock, wait_for_running=False).done
    study.tell(running, 2.0)
    assert claim_trial(study, 1, lambda: True, lock, wait_for_running=True).done


def test_a_trial_whose_heartbeat_stops_is_failed_and_enqueued_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_HEARTBEAT_SECONDS", "1")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = shared_study(url)
    lock = StudyLock(url, "shared")
    claim = claim_trial(study, 3, lambda: True, lock, wait_for_running=False)
    assert claim.trial is not None
    claim.trial.suggest_float("x", 0.0, 1.0)
    study._storage.record_heartbeat(claim.trial._trial_id)  # one beat, then the worker "dies"
    time.sleep(4.5)  # past the grace period (3 beats; SQLite keeps whole seconds)
    again = claim_trial(study, 3, lambda: True, lock, wait_for_running=False)
    dead = study.trials[claim.trial.number]
    assert dead.state == optuna.trial.TrialState.FAIL
    assert again.trial is not None and again.trial.params == dead.params  # the retry, claimed at once
    assert again.trial.number != dead.number
    study.tell(again.trial, 0.5)
    # A later resume does not enqueue it a second time.
    assert requeue_interrupted(study) == 0 and dead.number in (StudyState(study).requeued or [])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_locks_exclude_each_other_per_purpose(backend, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'study.db'}"
    lock = StudyLock(url, "shared")
    inside: list[str] = []

    def hold() -> None:
        with lock("claim"):
            inside.append("other")

    with lock("claim"):
        thread = threading.Thread(target=hold)
        thread.start()
        time.sleep(0.5)
        assert inside == []  # waits for the claim lock
        with lock("setup"):  # another purpose is free
            pass
    thread.join(timeout=10)
    assert inside == ["other"]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_needs_no_lock(url):
    with StudyLock(url, "s")("claim"):
        pass
