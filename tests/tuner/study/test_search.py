"""The search's rules without a model: priors, the range test's analysis, the budget and successive halving,
through study.ask() / study.tell() with made-up losses."""

from __future__ import annotations

import math

import optuna
import pytest

from tuner.settings import DataSettings, StudySettings, TrainBudget
from tuner.study.budget import Spent, StudyBudget, describe_spent
from tuner.study.options import halving_pruner
from tuner.study.priors import starting_points, width_rate, width_rule
from tuner.study.range_test import RangeResult, RangeTestPlan, analyse, search_range, smoothed
from tuner.study.space import SearchSpace, alpha_choice, lora_from_params, trial_params
from tuner.study.trial_objective import Spending

optuna.logging.set_verbosity(optuna.logging.WARNING)


# The width rule and the starting points.


@pytest.mark.parametrize(
    ("hidden", "model_type", "expected"),
    [
        (2000, "llama", 5e-4),  # 5e-5 x 10 at the reference width
        (576, "llama", 5e-4 * (2000 / 576) ** 0.781),  # SmolLM2-135M: 1.32e-3
        (4096, "llama", 5e-4 * (2000 / 4096) ** 0.781),  # Llama-2-7B: 2.86e-4, near the paper's 2e-4
        (4096, "qwen2", 5e-4 * (2000 / 4096) ** 0.0775),
    ],
)
def test_the_width_rule_scales_the_rate_with_the_model_width(hidden, model_type, expected):
    assert width_rate(hidden, model_type) == pytest.approx(expected)
    assert width_rate(hidden, model_type, lora=False) == pytest.approx(expected / 10)  # LoRA's 10x


def test_the_width_rule_says_which_exponent_it_used():
    assert "llama exponent" in width_rule(576, "llama")
    assert "Llama's is used" in width_rule(768, "gpt2")  # no fitted exponent for this family
    with pytest.raises(ValueError, match="hidden size"):
        width_rate(0, "llama")


def test_starting_points_are_the_guess_then_a_high_rank_at_the_same_rate_with_alpha_fixed():
    guess, high = starting_points(SearchSpace(), 576, "llama", "math")
    assert guess.params == {"learning_rate": 0.00132, "rank": 16, "alpha": 32.0, "targets": "all"}
    assert high.params == {"learning_rate": 0.00132, "rank": 256, "alpha": 32.0, "targets": "all"}
    assert "width rule" in guess.rule and "0.00132" in guess.rule
    assert "barely moves with the rank" in high.rule


def test_with_alpha_2r_the_high_rank_rate_scales_as_the_papers():
    space = SearchSpace(**alpha_choice("2r"))
    guess, high = starting_points(space, 576, "llama", "math")
    assert guess.params["alpha_multiple"] == 2.0 and lora_from_params(high.params).alpha == 512
    assert high.params["learning_rate"] == pytest.approx(0.00132 / 2)  # the paper's math rates: 1e-4 -> 5e-5


def test_starting_points_stay_inside_a_narrowed_space():
    space = SearchSpace(ranks=(8, 32), targets=("attention", "mlp"))
    points = starting_points(space, None, "", "code")
    assert points[0].params["rank"] == 8 and points[0].params["targets"] == "mlp"
    assert points[0].params["learning_rate"] == 2e-4  # no width known: the paper's code rate at r 16
    assert points[1].params["rank"] == 32


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("32", {"alphas": (32.0,), "alpha_multiples": (2.0,)}),
        ("2r", {"alphas": None, "alpha_multiples": (2.0,)}),
        ("search", {"alphas": None, "alpha_multiples": (0.5, 1.0, 2.0, 4.0)}),
    ],
)
def test_alpha_choices(text, fields):
    assert alpha_choice(text) == fields


@pytest.mark.parametrize("text", ["-1", "0", "xr", "twice", ""])
def test_a_bad_alpha_is_refused(text):
    with pytest.raises(ValueError, match="--alpha"):
        alpha_choice(text)


def test_alpha_is_always_among_a_trials_parameters():
    study = optuna.create_study()
    for space, key in ((SearchSpace(), "alpha"), (SearchSpace(**alpha_choice("2r")), "alpha_multiple")):
        params = space.suggest(study.ask())
        assert key in params and lora_from_params(params).alpha > 0


def test_a_preset_outside_the_fixed_alpha_joins_the_space_and_keeps_its_alpha():
    from tuner.settings import LoraSettings

    preset = trial_params(LoraSettings(64, 128.0, "mlp"), 3e-4)  # alpha = 2r, as the paper's presets
    space = SearchSpace().including(preset)
    assert space.alphas == (32.0, 128.0)
    fitted = space.fitting(preset)
    assert fitted["alpha"] == 128.0 and lora_from_params(fitted) == LoraSettings(64, 128.0, "mlp")
    study = optuna.create_study()
    study.enqueue_trial(fitted)
    assert lora_from_params(space.suggest(study.ask())) == LoraSettings(64, 128.0, "mlp")


def test_variants_are_searched_only_when_asked_for():
    study = optuna.create_study()
    assert "variant" not in SearchSpace().suggest(study.ask())
    params = SearchSpace(variants=("lora", "dora")).suggest(study.ask())
    assert params["variant"] in ("lora", "dora") and lora_from_params(params).variant == params["variant"]
    with pytest.raises(ValueError, match="unknown LoRA variant"):
        SearchSpace(variants=("lora", "qlora"))


def test_each_variant_draws_its_rate_from_its_own_range():
    space = SearchSpace(variants=("lora", "loraplus")).with_rates(1e-4, 3e-3).with_rates(1e-5, 2e-4, "loraplus")
    assert space.rate_range("lora") == (1e-4, 3e-3) and space.rate_range("loraplus") == (1e-5, 2e-4)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3, multivariate=True))
    drawn = []
    for _ in range(12):
        trial = study.ask()
        params = space.suggest(trial)
        drawn.append(params)
        study.tell(trial, math.log(float(params["learning_rate"])) ** 2)
    for params in drawn:
        low, high = space.rate_range(str(params["variant"]))
        assert low <= float(params["learning_rate"]) <= high
    assert {p["variant"] for p in drawn} == {"lora", "loraplus"}


def test_including_a_configuration_widens_its_own_variants_range():
    space = SearchSpace(variants=("lora", "dora")).with_rates(1e-4, 1e-3).with_rates(2e-4, 2e-3, "dora")
    wider = space.including({"learning_rate": 5e-3, "rank": 16, "alpha": 32.0, "targets": "all", "variant": "dora"})
    assert wider.rate_range("dora") == (2e-4, 5e-3) and wider.rate_range("lora") == (1e-4, 1e-3)
    plain = space.including({"learning_rate": 5e-5, "rank": 16, "alpha": 32.0, "targets": "all"})
    assert plain.rate_range("lora") == (5e-5, 1e-3) and plain.rate_range("dora") == (2e-4, 2e-3)
    with pytest.raises(ValueError, match="0 < low < high"):
        SearchSpace(variant_rates=(("dora", 1e-3, 1e-4),))


# The range test's analysis.


def test_a_range_test_finds_where_the_loss_stops_improving_and_where_it_diverges():
    plan = RangeTestPlan(start=1e-5, end=1e-1, steps=41, smoothing=0.0)
    rates = plan.rates()
    assert rates[0] == pytest.approx(1e-5) and rates[-1] == pytest.approx(1e-1)
    # Falling to a minimum at 1e-3 (step 20), then rising 0.15 a step: past 1.25 x the start (2.5) at step 31.
    losses = [2.0 - 1.0 * min(i, 20) / 20 + (0.15 * (i - 20) if i > 20 else 0.0) for i in range(41)]
    best, diverged, low, high = analyse(rates, losses, plan)
    assert best == pytest.approx(1e-3)
    assert diverged == pytest.approx(rates[31])
    assert (low, high) == pytest.approx(search_range(best, diverged))
    assert high == pytest.approx(min(3e-3, diverged / 2)) and low == pytest.approx(high / 30)


def test_a_non_finite_loss_is_divergence():
    plan = RangeTestPlan(steps=10, smoothing=0.5)
    losses = [2.0, 1.8, 1.5, 1.2, math.nan]
    best, diverged, _, high = analyse(plan.rates()[:5], losses, plan)
    assert best == plan.rates()[3] and diverged == plan.rates()[4] and high <= diverged / 2


def test_a_range_test_whose_loss_barely_fell_leaves_the_rates_alone():
    from tuner.study.range_test import conclusive

    plan = RangeTestPlan(steps=10, smoothing=0.0)
    assert conclusive([2.0, 1.9, 1.95], plan) and not conclusive([2.0, 1.99, 2.01, 2.6], plan)
    found = RangeResult(curve=[[1e-5, 2.0, 2.0]] * 4, best_rate=1e-4, conclusive=False, tokens=512)
    assert "the default rates were searched" in found.describe()


def test_smoothing_is_bias_corrected():
    assert smoothed([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])


def test_a_range_result_round_trips_and_says_what_it_found():
    found = RangeResult(curve=[[1e-5, 2.0, 2.0]], best_rate=1e-3, diverged_rate=1e-2, low=1e-4, high=3e-3, tokens=512)
    assert RangeResult.from_json(found.to_json()) == found
    assert "lowest at rate 0.001" in found.describe() and "0.0001 to 0.003" in found.describe()


def test_a_bad_range_test_plan_is_refused():
    with pytest.raises(ValueError, match="start < end"):
        RangeTestPlan(start=1e-2, end=1e-3)


# The budget.


@pytest.mark.parametrize(
    ("text", "tokens", "seconds"),
    [
        ("66000", 66000, None),
        ("66k", 66000, None),
        ("1.5M tokens", 1_500_000, None),
        ("200000 tokens", 200_000, None),
        ("90s", None, 90.0),
        ("30min", None, 1800.0),
        ("2h", None, 7200.0),
    ],
)
def test_budgets_in_tokens_or_time(text, tokens, seconds):
    assert StudyBudget.parse(text) == StudyBudget(tokens=tokens, seconds=seconds)


@pytest.mark.parametrize("text", ["30m", "5 parsecs", "0", "-3", "1.5", "", "10 tokens s"])
def test_a_budget_in_an_unknown_unit_is_refused(text):
    with pytest.raises(ValueError, match="--budget"):
        StudyBudget.parse(text)


def test_a_budget_below_one_trial_is_refused():
    budget = TrainBudget(train_tokens=4096, batch_size=4, seq_len=256)
    with pytest.raises(ValueError, match="below one trial"):
        StudySettings("m", DataSettings("math"), 10, budget, search_budget=StudyBudget(tokens=4000))


def test_the_budget_is_left_out_of_the_identity_so_a_resumed_study_may_raise_it():
    budget = TrainBudget(train_tokens=4096, batch_size=4, seq_len=256)
    small = StudySettings("m", DataSettings("math"), 10, budget, search_budget=StudyBudget(tokens=8192))
    large = StudySettings("m", DataSettings("math"), 10, budget, search_budget=StudyBudget(tokens=81920))
    assert small.identity() == large.identity()
    assert StudySettings.from_json(small.to_json()) == small
    assert "search_budget" not in StudySettings("m", DataSettings("math"), 10, budget).to_json()


def test_the_rungs_double_from_past_the_warm_up_to_the_last_step():
    assert TrainBudget(12 * 1024, 4, 256).eval_steps() == [3, 6, 12]
    assert TrainBudget(8 * 2048, 4, 512).eval_steps() == [2, 4, 8]
    assert TrainBudget(40 * 1024, 4, 256).eval_steps() == [5, 10, 20, 40]
    assert TrainBudget(12 * 1024, 4, 256, evaluations=1).eval_steps() == [12]


def _budgeted_study(tokens: int) -> tuple[optuna.Study, StudySettings]:
    trial_budget = TrainBudget(train_tokens=12 * 1024, batch_size=4, seq_len=256)  # rungs at 3, 6, 12 steps
    settings = StudySettings("m", DataSettings("math"), 100, trial_budget, search_budget=StudyBudget(tokens=tokens))
    return optuna.create_study(pruner=halving_pruner(trial_budget)), settings


def _run(study: optuna.Study, losses_by_rung: list[float]) -> str:
    """A made-up trial: reports its loss at each rung until pruned; records the steps it trained."""
    trial = study.ask()
    steps = 0
    for rung, loss in zip((3, 6, 12), losses_by_rung, strict=False):
        steps = rung
        trial.report(loss, rung)
        if rung < 12 and trial.should_prune():
            trial.set_user_attr("train_curve", [[s, 1.0] for s in range(1, steps + 1)])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return "PRUNED"
    trial.set_user_attr("train_curve", [[s, 1.0] for s in range(1, steps + 1)])
    study.tell(trial, losses_by_rung[-1])
    return "COMPLETE"


def test_successive_halving_keeps_the_better_half_at_each_rung():
    study, _ = _budgeted_study(10**6)
    assert _run(study, [1.0, 0.9, 0.8]) == "COMPLETE"  # the first trial is the best of one at every rung
    assert _run(study, [1.2, 1.1, 1.0]) == "PRUNED"  # worse at step 3 than the better half of two
    assert _run(study, [0.95, 0.85, 0.7]) == "COMPLETE"  # better at every rung: promoted
    pruned = study.trials[1]
    assert max(pruned.intermediate_values) == 3  # it cost 3 of 12 steps


def test_pruned_and_finished_trials_and_the_range_test_count_against_the_budget():
    from tuner.study.state import StudyState

    study, settings = _budgeted_study(20 * 1024)
    spending = Spending(settings, study)
    assert spending.first_rung_fits()
    _run(study, [1.0, 0.9, 0.8])  # 12 steps
    _run(study, [1.2, 1.1, 1.0])  # pruned at 3 steps
    StudyState(study).range_test = RangeResult(tokens=2048, seconds=1.0).to_json()
    assert spending.spent().tokens == (12 + 3) * 1024 + 2048
    assert describe_spent(settings.search_budget, spending.spent()) == (
        "17,408 of 20,480 training tokens used, 3,072 left"
    )
    assert spending.first_rung_fits()  # 3 steps = 3,072 tokens still fit
    assert not spending.fits(4)
    assert not spending.fits(1, running=Spent(3 * 1024, 1.0))  # a running trial's steps count too


def test_a_time_budget_counts_seconds_per_step():
    budget = StudyBudget(seconds=60.0)
    assert budget.allows(Spent(0, 50.0), 1024, 10.0)
    assert not budget.allows(Spent(0, 50.0), 1024, 10.5)
    assert budget.spent_share(Spent(0, 30.0)) == 0.5
