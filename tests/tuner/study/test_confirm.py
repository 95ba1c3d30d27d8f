"""The choice made with noise in mind: paired differences, who is re-measured, and the pick (no model)."""

from __future__ import annotations

import math

import pytest

from tuner.defaults import CONFIRM_TRIALS
from tuner.records import TrialRecord
from tuner.study.confirm import (
    NOISE_SE,
    Remeasured,
    confirm_choice,
    mean_loss,
    paired_difference,
    worth_remeasuring,
)


def rows(per_token: list[float], tokens: int = 10) -> list[list[float]]:
    return [[loss * tokens, tokens] for loss in per_token]


def record(number: int, value: float, target: list[float] | None = None, general: float = 2.0) -> TrialRecord:
    confirm = None
    if target is not None:
        confirm = {"target": rows(target), "general": rows([general] * len(target))}
    params = {"learning_rate": 1e-3, "rank": 16, "alpha": 32.0, "targets": "all"}
    return TrialRecord(number, "COMPLETE", params, value=value, confirm=confirm)


def test_mean_loss_weighs_rows_by_their_label_tokens():
    assert mean_loss([[10.0, 10], [30.0, 10]]) == 2.0
    assert mean_loss([[10.0, 5], [10.0, 15]]) == 1.0
    assert math.isnan(mean_loss([[0.0, 0]]))


def test_paired_difference_of_a_constant_shift_has_no_noise():
    a, b = rows([1.0, 2.0, 3.0]), rows([1.5, 2.5, 3.5])
    difference, se = paired_difference(a, b)
    assert difference == pytest.approx(-0.5) and se == pytest.approx(0.0)


def test_paired_difference_matches_the_textbook_standard_error_for_equal_rows():
    a, b = rows([1.0, 2.0, 4.0, 3.0]), rows([1.5, 1.5, 3.0, 3.0])
    diffs = [-0.5, 0.5, 1.0, 0.0]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    difference, se = paired_difference(a, b)
    assert difference == pytest.approx(mean) and se == pytest.approx(sd / 2)


def test_paired_difference_refuses_rows_that_do_not_pair():
    with pytest.raises(ValueError, match="differ in number"):
        paired_difference(rows([1.0]), rows([1.0, 2.0]))


def test_the_forgetting_term_adds_its_weighted_difference_and_noise():
    a = Remeasured(0, rows([1.0, 2.0, 3.0]), rows([2.0, 2.2, 2.0]))
    b = Remeasured(1, rows([1.1, 2.1, 3.1]), rows([2.0, 2.0, 2.0]))
    assert a.difference(b, 0.0) == pytest.approx((-0.1, 0.0))
    difference, se = a.difference(b, 0.5)
    general, general_se = paired_difference(a.general, b.general)
    assert difference == pytest.approx(-0.1 + 0.5 * general) and se == pytest.approx(0.5 * general_se)
    assert a.objective(2.0, 0.5) == pytest.approx(2.0 + 0.5 * (mean_loss(a.general) - 2.0))


@pytest.mark.parametrize(
    ("value", "completed", "expected"),
    [
        (1.0, [], True),
        (1.0, [0.5, 0.6], True),
        (1.0, [0.5, 0.6, 0.7], False),
        (0.65, [0.5, 0.6, 0.7, 0.8], True),
    ],
)
def test_only_a_trial_among_the_best_completed_is_remeasured(value, completed, expected):
    assert CONFIRM_TRIALS == 3
    assert worth_remeasuring(value, completed) is expected


def test_the_pick_is_the_best_on_the_confirm_set_and_a_clear_lead_is_beyond_noise():
    trials = [
        record(0, 1.00, [1.30, 1.32, 1.28, 1.31]),
        record(1, 1.01, [1.10, 1.12, 1.09, 1.11]),  # second on the ranking rows, first on the larger set
        record(2, 1.05, [1.40, 1.41, 1.39, 1.42]),
        record(3, 1.20),  # never re-measured
    ]
    choice = confirm_choice(trials, goal=0.0, base_general_loss=2.0)
    assert choice.pick == 1 and choice.searched_best == 0 and choice.runner_up == 0
    assert list(choice.objectives) == [1, 0, 2]
    assert choice.lead == pytest.approx(0.1975) and not choice.within_noise()
    text = choice.describe(pruned_rows=8)
    assert "re-measured on 4 held-out rows" in text and "(8 rows ranked them)" in text
    assert "Trial 0 led on the ranking rows; on the larger set trial 1 leads." in text
    assert "Beyond noise: trial 1 leads trial 0 by 0.1975" in text


def test_a_lead_under_two_standard_errors_is_called_within_noise():
    trials = [record(0, 1.0, [1.0, 1.4, 0.8, 1.2]), record(1, 1.1, [1.05, 1.2, 1.0, 1.1])]
    choice = confirm_choice(trials, goal=0.0, base_general_loss=2.0)
    assert choice.pick == 1 and 0 < choice.lead < NOISE_SE * choice.lead_se and choice.within_noise()
    assert "Within noise: trial 1 leads trial 0 by" in choice.describe(8)
    assert "either would do" in choice.describe(8)


def test_no_choice_without_remeasured_trials_or_the_base_models_confirm_loss():
    assert confirm_choice([record(0, 1.0)], 0.5, 2.0) is None
    assert confirm_choice([record(0, 1.0, [1.0, 1.1])], 0.5, None) is None
    assert confirm_choice([], 0.5, 2.0) is None
    single = confirm_choice([record(0, 1.0, [1.0, 1.1])], 0.5, 2.0)
    assert single.pick == 0 and single.lead is None and not single.within_noise()
