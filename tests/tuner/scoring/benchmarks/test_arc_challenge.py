"""ARC-Challenge: AI2's records flattened to lm-eval's layout, scores that follow the likelihoods, the hub's failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tuner.scoring.benchmarks.scripted import ScriptedLM, check_scores_follow_the_likelihoods
from tuner.errors import AdvisorError
from tuner.scoring.benchmarks import EvalSettings
from tuner.scoring.benchmarks.arc_challenge import arc_docs
from tuner.scoring.evaluation import score_task


def gold_index(doc: dict[str, Any]) -> int:
    return doc["choices"]["label"].index(doc["answerKey"])


def test_mirror_reader_gives_lm_eval_layout(data_dir: Path):
    arc = arc_docs(data_dir)["test"]
    assert len(arc) == 1172
    numeric = next(doc for doc in arc if doc["answerKey"] == "1")
    assert numeric["choices"]["label"][:2] == ["1", "2"]


def test_multiple_choice_scores_follow_the_likelihoods(data_dir: Path):
    check_scores_follow_the_likelihoods("arc_challenge", arc_docs(data_dir)["test"], gold_index, data_dir)


def test_without_a_mirror_the_hub_is_tried_and_its_failure_named():
    settings = EvalSettings(tasks=("arc_challenge",), limit=2)
    with pytest.raises(
        AdvisorError, match=r"cannot load benchmark arc_challenge from the Hugging Face hub.*--data-dir"
    ):
        score_task(ScriptedLM(choose=gold_index), "arc_challenge", settings, None)
