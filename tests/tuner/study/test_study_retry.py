"""Retries in their slots and pruning on results alone, through Optuna's ask and tell with made-up numbers."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tuner.settings import TrainBudget
from tuner.study.options import halving_pruner
from tuner.study.retry import SLOT, add_retry, claim_in_slot_order, trial_slot
from tuner.study.state import requeue_interrupted
from tuner.study.trials import ended_trials, trial_record

BUDGET = TrainBudget(train_tokens=4096, batch_size=2, seq_len=128, evaluations=2)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_failed_trials_rung_never_prunes_another():
    study = optuna.create_study(pruner=halving_pruner(BUDGET))
    rung = BUDGET.eval_steps()[0]
    killed = study.ask()
    killed.report(1.0, rung)
    assert not killed.should_prune()  # its rung value is stored, then its process dies
    study.tell(killed, state=TrialState.FAIL)
    worse = study.ask()
    worse.report(2.0, rung)
    assert not worse.should_prune()  # alone among the trials with results at this rung: promoted

    plain = optuna.create_study(pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=rung, reduction_factor=3))
    killed = plain.ask()
    killed.report(1.0, rung)
    killed.should_prune()
    plain.tell(killed, state=TrialState.FAIL)
    worse = plain.ask()
    worse.report(2.0, rung)
    assert worse.should_prune()  # Optuna's own counts the dead trial's rung


def test_an_interrupted_trial_runs_again_in_its_slot_before_later_ones():
    study = optuna.create_study()
    for rate in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": rate})
    seeds: list[int] = []
    first = claim_in_slot_order(study, seeds.append)
    assert first.suggest_float("x", 0, 1) == 0.1 and trial_slot(first) == 0
    # Killed: the next run finds it running, fails it and enqueues its retry after the two waiting trials.
    assert requeue_interrupted(study) == 1
    retry = claim_in_slot_order(study, seeds.append)
    assert retry.number == 3 and trial_slot(retry) == 0 and retry.suggest_float("x", 0, 1) == 0.1
    study.tell(retry, 1.0)
    later = [claim_in_slot_order(study, seeds.append) for _ in range(3)]
    assert [trial_slot(t) for t in later] == [1, 2, 3]  # a new trial takes the next fresh slot: 3, not number 6
    assert [t.number for t in later] == [1, 2, 4]
    assert seeds == [0, 0, 1, 2, 3]  # the sampler is seeded by the slot: the retry drew where its original did
    record = trial_record(next(t for t in ended_trials(study) if t.number == 0))
    assert record.state == "FAIL" and record.reason.startswith("interrupted") and record.slot == 0


def test_a_retry_measures_nothing_its_original_did():
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.5, 3)
    trial.set_user_attr("train_curve", [[1, 2.0]])
    study._storage.set_trial_system_attr(trial._trial_id, "completed_rung_0", 0.5)
    study.tell(trial, state=TrialState.FAIL)
    add_retry(study, study.trials[0])
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.params == study.trials[0].params
    assert retry.user_attrs == {SLOT: 0, "retry_of": 0} and not retry.intermediate_values
    assert "completed_rung_0" not in retry.system_attrs and retry.system_attrs["retry_history"] == [0]
