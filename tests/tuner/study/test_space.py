"""Tuner logic without a model: study.ask() / study.tell() with fake numbers."""

from __future__ import annotations

import optuna
import pytest

from tuner.records import TrialRecord
from tuner.settings import DataSettings, StudySettings, TrainBudget
from tuner.study.recommend import recommend
from tuner.study.space import SearchSpace, lora_from_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_paper_configurations_are_asked_first_then_the_space_is_sampled():
    space = SearchSpace(alphas=None)  # alpha = 2r, the paper's
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    for params in space.paper_configurations("code"):
        study.enqueue_trial(params)
    asked = []
    for _ in range(8):
        trial = study.ask()
        params = space.suggest(trial)
        asked.append(params)
        study.tell(trial, float(params["learning_rate"]) * 100)  # fake objective
    assert asked[0] == {"learning_rate": 2e-4, "rank": 16, "alpha_multiple": 2.0, "targets": "all"}
    assert asked[1] == {"learning_rate": 1e-4, "rank": 256, "alpha_multiple": 2.0, "targets": "all"}
    for params in asked[2:]:
        assert space.lr_low <= params["learning_rate"] <= space.lr_high
        assert params["rank"] in space.ranks and params["targets"] in ("attention", "mlp", "all")


def test_math_paper_rates_differ_from_code():
    rates = [p["learning_rate"] for p in SearchSpace().paper_configurations("math")]
    assert rates == [1e-4, 5e-5]


def test_alpha_is_a_multiple_of_rank():
    lora = lora_from_params({"learning_rate": 1e-4, "rank": 64, "alpha_multiple": 0.5, "targets": "mlp"})
    assert (lora.rank, lora.alpha, lora.targets) == (64, 32.0, "mlp")


def test_space_rejects_inverted_learning_rates():
    with pytest.raises(ValueError, match="lr_low < lr_high"):
        SearchSpace(lr_low=1e-3, lr_high=1e-4)


def _record(number, state, value, lr, rank, targets, reason=None):
    return TrialRecord.from_json(
        {
            "number": number,
            "state": state,
            "value": value,
            "reason": reason,
            "params": {"learning_rate": lr, "rank": rank, "alpha_multiple": 2.0, "targets": targets},
            "target_loss": value,
            "general_loss": 2.0,
            "forgetting_rise": 0.01,
        }
    )


SETTINGS = StudySettings(
    model="m", data=DataSettings("math"), trials=5, budget=TrainBudget(train_tokens=4096), goal=0.25
)


def test_recommendation_takes_the_lowest_objective_and_explains_each_choice():
    trials = [
        _record(0, "COMPLETE", 1.30, 1e-4, 16, "all"),
        _record(1, "COMPLETE", 1.20, 3e-4, 64, "all"),
        _record(2, "COMPLETE", 1.45, 3e-4, 64, "attention"),
        _record(3, "PRUNED", 9.0, 2e-3, 8, "mlp", reason="diverged: training loss became nan at step 3"),
    ]
    rec = recommend(SETTINGS, trials, {"target_loss": 1.6, "general_loss": 2.0}).to_json()
    assert (rec["trial"], rec["learning_rate"], rec["rank"], rec["alpha"], rec["targets"]) == (
        1,
        3e-4,
        64,
        128.0,
        "all",
    )
    assert rec["target_modules"] == "all-linear" and rec["epochs"] == 4
    assert rec["trials"] == {"complete": 3, "pruned": 1, "fail": 0}
    assert "3x the paper's LoRA rate for math at rank 64 (0.0001)" in rec["evidence"]["learning_rate"]
    assert "1 trial(s) diverged, the lowest at 0.002" in rec["evidence"]["learning_rate"]
    assert "all 1.2000 (2 trials), attention 1.4500 (1 trial)" in rec["evidence"]["target_modules"]
    assert "Biderman et al. 2024" in rec["evidence"]["alpha"]
    assert rec["objective"]["base_general_loss"] == 2.0 and rec["objective"]["goal"] == 0.25


def test_recommendation_falls_back_to_the_paper_when_nothing_completed():
    trials = [_record(0, "PRUNED", None, 2e-3, 8, "mlp", reason="diverged: training loss became inf at step 1")]
    rec = recommend(SETTINGS, trials, {"target_loss": 1.6, "general_loss": 2.0}).to_json()
    assert rec["trial"] is None
    assert (rec["learning_rate"], rec["rank"], rec["alpha"], rec["targets"]) == (1e-4, 16, 32.0, "all")
    assert "the paper (no trial completed)" in rec["evidence"]["rank"]
