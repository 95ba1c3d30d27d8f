"""The benchmarks as a whole: subsets, settings, cache keys, the forgetting score, the base-score cache.

Each benchmark's mirror reader and scoring on hand-made outputs are tested in tests/tuner/scoring/benchmarks/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.data.prepare import HELLASWAG_RESERVED_FROM
from tuner.scoring.benchmarks import (
    BENCHMARKS,
    EvalSettings,
    difference_stderr,
    forgetting_score,
    forgetting_stderr,
    item_count,
    paired_stderr,
    parse_tasks,
    score_change,
    score_stderr,
    subset_indices,
)
from tuner.scoring.cache import ScoreCache


def test_subsets_are_seeded_samples_from_the_pool_and_none_means_every_item():
    hellaswag = BENCHMARKS["hellaswag"]
    first = subset_indices(hellaswag, 50, seed=0)
    assert first == subset_indices(hellaswag, 50, seed=0) != subset_indices(hellaswag, 50, seed=1)
    assert len(first) == 50 and first == sorted(set(first))
    assert max(first) < HELLASWAG_RESERVED_FROM  # the study's general text is never scored
    assert subset_indices(hellaswag, None, 0) is None and subset_indices(hellaswag, 10042, 0) is None
    assert item_count(BENCHMARKS["humaneval"], 500) == 164 and item_count(hellaswag, 50) == 50


def test_settings_refuse_humaneval_without_permission_and_bad_values():
    with pytest.raises(ValueError, match="--allow-code-execution"):
        EvalSettings(tasks=("gsm8k", "humaneval"))
    with pytest.raises(ValueError, match="unknown benchmark mmlu"):
        EvalSettings(tasks=("mmlu",))
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        EvalSettings(limit=0)
    with pytest.raises(ValueError, match="unknown benchmark nope"):
        parse_tasks("gsm8k,nope")
    assert parse_tasks(" gsm8k, hellaswag,gsm8k ") == ("gsm8k", "hellaswag")


def test_cache_keys_name_the_prompt_format_only_where_it_matters():
    chat, plain = EvalSettings(limit=8), EvalSettings(limit=8, prompt_format="plain")
    assert chat.cache_key("hellaswag", "m", "mirror") == plain.cache_key("hellaswag", "m", "mirror")
    assert chat.cache_key("gsm8k", "m", "mirror") != plain.cache_key("gsm8k", "m", "mirror")
    assert chat.cache_key("gsm8k", "m", "mirror") != chat.cache_key("gsm8k", "m", "hub")
    assert chat.cache_key("gsm8k", "m", "mirror") != EvalSettings(limit=9).cache_key("gsm8k", "m", "mirror")


def test_forgetting_is_the_mean_of_the_three_general_benchmarks():
    assert forgetting_score({"hellaswag": 0.4, "winogrande": 0.5, "arc_challenge": 0.3}) == pytest.approx(0.4)
    assert forgetting_score({"hellaswag": 0.4, "winogrande": 0.5}) is None


def test_score_cache_round_trip_and_damage(tmp_path: Path):
    cache = ScoreCache(tmp_path)
    key = EvalSettings(limit=4).cache_key("winogrande", "model-a", "mirror")
    assert cache.get(key) is None
    cache.put(key, {"score": 0.5, "metrics": {"acc": 0.5}, "items": 4, "seconds": 1.0})
    assert cache.get(key)["score"] == 0.5
    assert cache.get({**key, "model": "model-b"}) is None
    for stored in tmp_path.iterdir():
        stored.write_text("{not json")
    assert cache.get(key) is None


def test_standard_errors_match_the_binomial_formula_on_a_known_table():
    # 6 of 10 right: sqrt(0.6 * 0.4 / 9) = 0.1633 (lm-eval's mean_stderr, the sample variance over n).
    assert score_stderr(0.6, 10) == pytest.approx(0.163299, abs=1e-6)
    assert score_stderr(1.0, 10) == 0.0 and score_stderr(0.5, 1) != score_stderr(0.5, 1)  # NaN under 2 items
    three = {"hellaswag": 0.03, "winogrande": 0.04, "arc_challenge": 0.12}
    assert forgetting_stderr(three) == pytest.approx(0.13 / 3)  # independent: sqrt(sum of squares) / 3
    assert difference_stderr(0.03, 0.04) == pytest.approx(0.05)


def test_a_paired_change_is_tested_on_the_items_both_models_scored():
    base = {"0": 1.0, "1": 0.0, "2": 1.0, "3": 0.0, "4": 1.0, "5": 0.0}
    same_but_one = {**base, "1": 1.0}  # one item flips from wrong to right
    # Differences 0,1,0,0,0,0: mean 1/6, sample sd sqrt(1/6), SE sqrt(1/6)/sqrt(6) = 1/6.
    assert paired_stderr(same_but_one, base) == pytest.approx(1 / 6)
    assert paired_stderr(base, base) == 0.0  # the same answers: no noise in the change at all
    assert paired_stderr({**base, "9": 1.0}, base) == paired_stderr(base, base)  # only shared items count
    assert paired_stderr(base, None) is None and paired_stderr({"0": 1.0}, {"0": 0.0}) is None
    # Unpaired, the same two scores (0.667 and 0.5 on 6 items) carry an error of 0.307: pairing removes what the
    # items share.
    unpaired = difference_stderr(score_stderr(4 / 6, 6), score_stderr(3 / 6, 6))
    assert unpaired == pytest.approx(0.3073, abs=1e-4) and paired_stderr(same_but_one, base) < unpaired / 1.8

    change = score_change(4 / 6, 3 / 6, 0.21, 0.22, paired_stderr(same_but_one, base))
    assert change["paired"] and change["change_stderr"] == pytest.approx(1 / 6) and change["within_noise"]
    clear = score_change(0.9, 0.5, 0.05, 0.05, 0.05)
    assert clear["change"] == pytest.approx(0.4) and not clear["within_noise"]
    assert score_change(0.5, 0.5, None, None)["within_noise"]  # no error known: never called a finding


def test_the_pick_is_scored_on_as_many_items_as_its_time_allows_up_to_a_target_standard_error():
    from tuner.scoring.benchmarks import MAX_PICK_ITEMS, MIN_PICK_ITEMS, TARGET_GENERAL_STDERR, pick_items
    from tuner.scoring.benchmarks.budget import items_for_general_stderr

    # The general mean of three accuracies at 0.5 on n items has SE sqrt(3 x 0.25 / (n - 1)) / 3.
    assert MAX_PICK_ITEMS == items_for_general_stderr(0.03) == 94
    general = forgetting_stderr(
        {name: score_stderr(0.5, MAX_PICK_ITEMS) for name in ("hellaswag", "winogrande", "arc_challenge")}
    )
    assert (
        general
        <= TARGET_GENERAL_STDERR
        < forgetting_stderr(
            {name: score_stderr(0.5, MAX_PICK_ITEMS - 1) for name in ("hellaswag", "winogrande", "arc_challenge")}
        )
    )
    per_item = {"hellaswag": 0.8, "winogrande": 0.125, "arc_challenge": 0.3, "gsm8k": 2.35}  # seconds, this CPU
    assert pick_items(60.0, per_item) == MIN_PICK_ITEMS  # a one-minute study: the floor
    assert pick_items(600.0, per_item) == int(0.5 * 600 / (2 * sum(per_item.values())))  # half its training time
    assert pick_items(36_000.0, per_item) == MAX_PICK_ITEMS  # ten hours of training: no more than the target needs
    with pytest.raises(ValueError, match="positive"):
        items_for_general_stderr(0.0)
