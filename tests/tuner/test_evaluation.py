"""The benchmarks as a whole: subsets, settings, cache keys, the forgetting score, the base-score cache.

Each benchmark's mirror reader and scoring on hand-made outputs are tested in tests/tuner/benchmarks/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.benchmarks import (
    BENCHMARKS,
    EvalSettings,
    forgetting_score,
    item_count,
    parse_tasks,
    subset_indices,
)
from tuner.data import HELLASWAG_RESERVED_FROM
from tuner.score_cache import ScoreCache


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
