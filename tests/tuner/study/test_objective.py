from __future__ import annotations

import math

import pytest

from tuner.study.objective import DivergenceGuard, forgetting_rise, objective_value


@pytest.mark.parametrize(
    ("target", "general", "base", "goal", "expected"),
    [
        (1.0, 2.5, 2.0, 0.0, 1.0),  # learn most: forgetting ignored
        (1.0, 2.5, 2.0, 1.0, 1.5),  # forget least: a nat forgotten costs a nat learned
        (1.0, 2.5, 2.0, 0.5, 1.25),
        (1.0, 1.8, 2.0, 1.0, 0.8),  # general loss fell: the objective rewards it
    ],
)
def test_objective_weights_forgetting_by_goal(target, general, base, goal, expected):
    assert objective_value(target, general, base, goal) == pytest.approx(expected)


def test_forgetting_rise_is_general_loss_over_base():
    assert forgetting_rise(2.3, 2.0) == pytest.approx(0.3)


def test_objective_rejects_goal_outside_range():
    with pytest.raises(ValueError, match="goal must be between 0 and 1, got 2"):
        objective_value(1.0, 1.0, 1.0, 2)


def test_guard_stops_on_non_finite_loss_at_once():
    guard = DivergenceGuard(start_loss=1.5)
    assert guard.check(1, 1.4) is None
    assert guard.check(2, math.nan) == "diverged: training loss became nan at step 2"


def test_guard_stops_when_recent_mean_is_far_above_start():
    guard = DivergenceGuard(start_loss=1.0, factor=2.0, window=3)
    assert [guard.check(s, v) for s, v in enumerate([0.9, 4.0, 0.8, 0.7], start=1)] == [None] * 4  # one spike
    reason = guard.check(5, 5.0)  # mean of 0.8, 0.7, 5.0 = 2.17
    assert reason == "diverged: mean training loss 2.17 over steps 3-5 is above 2x the starting loss 1"


def test_guard_checks_heldout_loss():
    guard = DivergenceGuard(start_loss=1.0)
    assert guard.check_heldout(4, 1.9) is None
    assert "held-out loss 2.5 at step 8" in str(guard.check_heldout(8, 2.5))
