from __future__ import annotations

import pytest

from tuner.defaults import VARIANTS
from tuner.settings import DataSettings, LoraSettings, StudySettings, TrainBudget


@pytest.mark.parametrize(
    ("tokens", "batch", "seq", "steps", "warmup", "evals"),
    [
        (2048, 4, 512, 1, 0, [1]),
        (65536, 4, 512, 32, 3, [4, 8, 16, 32]),  # successive halving's rungs, the first past the warm-up
        (10_000, 2, 128, 39, 4, [9, 18, 39]),  # 39 // 8 = 4 would fall inside the warm-up
        (1024, 2, 128, 4, 0, [1, 2, 4]),
    ],
)
def test_budget_steps_warmup_and_evaluations(tokens, batch, seq, steps, warmup, evals):
    budget = TrainBudget(train_tokens=tokens, batch_size=batch, seq_len=seq)
    assert budget.steps() == steps
    assert budget.warmup_steps() == warmup
    assert budget.eval_steps() == evals


def test_budget_below_one_step_says_what_one_step_needs():
    with pytest.raises(ValueError, match=r"100 tokens is below one optimizer step \(4 rows x 512 tokens = 2048\)"):
        TrainBudget(train_tokens=100)


def test_lora_target_modules_follow_llama_names():
    assert LoraSettings(16, 32, "attention").target_modules() == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert LoraSettings(16, 32, "mlp").target_modules() == ["gate_proj", "up_proj", "down_proj"]
    assert LoraSettings(16, 32, "all").target_modules() == "all-linear"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0, "alpha": 1, "targets": "all"}, "rank must be at least 1, got 0"),
        ({"rank": 8, "alpha": 16, "targets": "embeddings"}, "targets must be one of attention, mlp, all"),
        (
            {"rank": 8, "alpha": 16, "targets": "all", "variant": "vera"},
            "unknown LoRA variant 'vera': choose from lora, rslora, dora, pissa, loraplus",
        ),
    ],
)
def test_lora_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoraSettings(**kwargs)


def test_study_settings_identity_leaves_out_the_trial_count():
    budget = TrainBudget(train_tokens=4096)
    few = StudySettings(model="m", data=DataSettings("math"), trials=3, budget=budget)
    many = StudySettings(model="m", data=DataSettings("math"), trials=30, budget=budget)
    assert few.identity() == many.identity()
    assert "trials" not in few.identity()
    other_goal = StudySettings(model="m", data=DataSettings("math"), trials=3, budget=budget, goal=1.0)
    assert other_goal.identity() != few.identity()


def test_study_settings_reject_goal_outside_0_1_and_custom_without_data():
    budget = TrainBudget(train_tokens=4096)
    with pytest.raises(ValueError, match="goal must be between 0"):
        StudySettings(model="m", data=DataSettings("math"), trials=1, budget=budget, goal=1.5)
    with pytest.raises(ValueError, match="custom task needs --data"):
        StudySettings(model="m", data=DataSettings("custom"), trials=1, budget=budget)


def test_each_variant_is_a_setting_of_peft_or_of_the_optimizer():
    arguments = {variant: LoraSettings(16, 32, "all", variant=variant).peft_arguments() for variant in VARIANTS}
    assert arguments == {
        "lora": {},
        "rslora": {"use_rslora": True},
        "dora": {"use_dora": True},
        "pissa": {"init_lora_weights": "pissa_niter_4"},
        "loraplus": {},  # the optimizer's (tuner.training.trial.adapter_optimizer)
    }
    assert LoraSettings(16, 32, "all").variant == "lora"


@pytest.mark.parametrize(
    ("train_tokens", "confirm_rows", "expected"),
    [
        (4 * 512 * 4, None, 8),  # 16 training rows: half is 8, the ranking rows' count
        (4 * 512 * 12, None, 24),  # 48 training rows: half
        (4 * 512 * 100, None, 32),  # at most CONFIRM_ROWS
        (4 * 512 * 100, 0, 0),  # none
        (4 * 512 * 4, 50, 50),  # as given
    ],
)
def test_confirm_sets_are_sized_to_the_trial(train_tokens, confirm_rows, expected):
    budget = TrainBudget(train_tokens, batch_size=4, seq_len=512, confirm_rows=confirm_rows)
    assert budget.confirm_set_rows() == expected and budget.packing().confirm_rows == expected
    with pytest.raises(ValueError, match="confirm_rows must be 0 or more"):
        TrainBudget(train_tokens, confirm_rows=-1)
