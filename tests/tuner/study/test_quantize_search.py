"""--quantize search: each trial draws 16-bit or 4-bit (QLoRA) base weights where both fit the memory budget, the single
guess runs on both, and the recommendation carries the pick's own base with the evidence comparing them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tuner.records import TrialRecord
from tuner.settings import DataSettings, LoraSettings, StudySettings, TrainBudget
from tuner.study.recommend import recommend
from tuner.study.space import SearchSpace, quantize_from_params

BUDGET = TrainBudget(train_tokens=2048, batch_size=2, seq_len=128, evaluations=1)
GUESS = {"learning_rate": 1e-3, "rank": 16, "alpha": 32.0, "targets": "all"}


def settings(model: str = "m", memory_budget: int | None = None, quantize: str | None = "search") -> StudySettings:
    return StudySettings(
        model=model, data=DataSettings("math"), trials=3, budget=BUDGET, memory_budget=memory_budget, quantize=quantize
    )


def test_the_space_draws_the_base_weights_only_where_searched():
    import optuna

    searched = SearchSpace(quantize=("none", "nf4"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {searched.suggest(study.ask())["quantize"] for _ in range(20)}
    assert drawn == {"none", "nf4"}
    assert "quantize" not in SearchSpace().suggest(study.ask())
    assert searched.fitting(GUESS)["quantize"] == "none"  # a starting point is 16-bit unless it says otherwise
    assert searched.fitting({**GUESS, "quantize": "nf4"})["quantize"] == "nf4"
    assert "quantize" not in SearchSpace().fitting({**GUESS, "quantize": "nf4"})
    assert quantize_from_params({**GUESS, "quantize": "nf4"}) == "nf4"
    assert quantize_from_params({**GUESS, "quantize": "none"}) is None and quantize_from_params(GUESS) is None
    with pytest.raises(ValueError, match="searched base weights"):
        SearchSpace(quantize=("int8",))
    with pytest.raises(ValueError, match="quantize must be one of none, nf4, search"):
        settings(quantize="int8")


def test_search_is_kept_where_both_fit_and_becomes_qlora_where_only_4_bit_does(tiny_model):
    from tuner.memory.bounds import memory_bounds, study_quantize
    from tuner.memory.estimate import TrainSetup, estimate, model_shape

    model = str(tiny_model)
    assert study_quantize(settings(model), SearchSpace(), "cpu") == "search"  # no budget: both are drawn
    shape = model_shape(model)
    least = TrainSetup(rank=8, targets="attention", batch=2, seq_len=128, gradient_checkpointing=True)
    sixteen, four = estimate(shape, least).total, estimate(shape, replace(least, quantized=True)).total
    weights = {q: estimate(shape, replace(least, quantized=q)).weights for q in (False, True)}
    space = SearchSpace(ranks=(8,), targets=("attention",))
    assert study_quantize(settings(model, sixteen - 1), space, "cpu") == "nf4"
    # Both bases are held under search: a 16-bit trial counts the 4-bit weights beside it, and the other way round;
    # where they do not fit side by side, every trial is 16-bit as without --quantize.
    both = max(sixteen + weights[True], four + weights[False])
    assert study_quantize(settings(model, both - 1), space, "cpu") is None
    assert study_quantize(settings(model, both), space, "cpu") == "search"
    assert study_quantize(settings(model, both, quantize="none"), space, "cpu") is None

    bounded, feasible, checkpointing = memory_bounds(settings(model, both), space, quantize="search")
    assert bounded.quantize == ("none", "nf4")
    lora = LoraSettings(8, 16, "attention")
    assert feasible(lora, "none") is None and feasible(lora, "nf4") is None
    assert checkpointing(lora, "none")  # it fits only with its activations recomputed
    big = LoraSettings(256, 512, "all")
    assert feasible(big, "nf4").startswith("estimated") and "for QLoRA r=256 on all" in feasible(big, "nf4")
    assert "for r=256 on all" in feasible(big, "none")


def record(number: int, value: float, quantize: str, state: str = "COMPLETE", **changes) -> TrialRecord:
    params = {**GUESS, "quantize": quantize, **changes}
    evaluations = [[1, value + 0.1, 1.0], [2, value, 1.0]][: 1 if state == "PRUNED" else 2]
    return TrialRecord(number, state, params, value=value if state == "COMPLETE" else None, evaluations=evaluations)


def test_the_recommendation_carries_the_picks_base_with_the_paired_comparison():
    trials = [record(0, 0.90, "none"), record(1, 0.93, "nf4"), record(2, 0.88, "nf4", rank=8)]
    chosen = recommend(settings(), trials, {"target_loss": 1.2, "general_loss": 1.0})
    assert chosen.trial == 2 and chosen.quantize == "nf4"
    why = chosen.evidence["quantize"]
    assert why.startswith("QLoRA (4-bit NF4) base weights from trial 2, searched with --quantize search")
    assert "QLoRA (4-bit NF4) 0.8800 (2 trials), 16-bit 0.9000 (1 trial)" in why
    assert "against 16-bit: +0.0300 at step 2 objective" in why and "Dettmers et al. 2023" in why
    # A pair one of which was pruned is compared at the last step both reached.
    trials[1] = record(1, 0.95, "nf4", state="PRUNED")
    why = recommend(settings(), trials, {"target_loss": 1.2, "general_loss": 1.0}).evidence["quantize"]
    assert "against 16-bit: +0.0500 at step 1 objective" in why
    sixteen = recommend(settings(), trials[:2], {"target_loss": 1.2, "general_loss": 1.0})
    assert sixteen.quantize is None and "quantize" not in sixteen.to_json()
    plain = TrialRecord(0, "COMPLETE", GUESS, value=0.9)
    assert "quantize" not in recommend(settings(quantize=None), [plain], {}).evidence


def test_a_study_searching_the_base_weights_runs_the_guess_on_both_and_resumes(tiny_model, data_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from tuner.events import Stage
    from tuner.study.options import StudyOptions
    from tuner.study.run import run_study

    space = SearchSpace(ranks=(8, 16), targets=("attention", "all"))
    said: list[object] = []
    options = StudyOptions(data_dir=data_dir, score_items=0, space=space, report=said.append)
    chosen = run_study(replace(settings(str(tiny_model)), trials=3), tmp_path / "run", options)
    trials = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*.json"))]
    first, second = trials[0]["params"], trials[1]["params"]
    assert first["quantize"] == "none" and second["quantize"] == "nf4"
    assert {k: v for k, v in first.items() if k != "quantize"} == {k: v for k, v in second.items() if k != "quantize"}
    assert all(t["state"] == "COMPLETE" for t in trials[:2])
    assert trials[0]["value"] != trials[1]["value"]  # the 4-bit base is another model
    loaded = [e.message for e in said if isinstance(e, Stage) and e.message.startswith("loading")]
    assert sum("in 4-bit NF4" in message for message in loaded) == 1  # loaded once, then held beside the 16-bit one
    assert "against 16-bit:" in chosen.evidence["quantize"]  # the guess's pair, pruned or not
    pick = next(t for t in trials if t["number"] == chosen.trial)
    assert chosen.quantize == quantize_from_params(pick["params"])
    written = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert written["quantize"] == "search"

    again = run_study(replace(settings(str(tiny_model)), trials=4), tmp_path / "run", options)
    trials = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*.json"))]
    assert len(trials) == 4 and trials[3]["params"]["quantize"] in ("none", "nf4")
    assert "against 16-bit:" in again.evidence["quantize"]
    with pytest.raises(Exception, match="other settings"):
        run_study(replace(settings(str(tiny_model)), trials=4, quantize="nf4"), tmp_path / "run", options)


def test_a_qlora_pick_is_scored_on_its_4_bit_base_against_the_16_bit_base(tiny_model, data_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from tuner.study.options import StudyOptions
    from tuner.study.run import run_study

    first = {**GUESS, "learning_rate": 1e-2, "quantize": "nf4"}
    options = StudyOptions(data_dir=data_dir, first_configurations=(first,), space=SearchSpace(ranks=(16,)))
    chosen = run_study(replace(settings(str(tiny_model)), trials=1), tmp_path / "run", options)
    assert chosen.trial == 0 and chosen.quantize == "nf4"
    scores = chosen.scores  # scored after the search: the trial was too short to score as it ended
    assert scores is not None and scores.plan["mode"] == "pick" and scores.base and "0" in scores.trials
    assert json.loads((tmp_path / "run" / "recommendation.json").read_text())["quantize"] == "nf4"
