"""WinoGrande: the mirror's dev split, scores that follow the model's likelihoods, a missing file named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tuner.scoring.benchmarks.scripted import ScriptedLM, check_scores_follow_the_likelihoods
from tuner.errors import AdvisorError
from tuner.scoring.benchmarks import EvalSettings
from tuner.scoring.benchmarks.winogrande import winogrande_docs
from tuner.scoring.evaluation import score_task


def gold_index(doc: dict[str, Any]) -> int:
    return int(doc["answer"]) - 1


def test_mirror_reader_gives_lm_eval_layout(data_dir: Path):
    assert len(winogrande_docs(data_dir)["validation"]) == 1267


def test_multiple_choice_scores_follow_the_likelihoods(data_dir: Path):
    check_scores_follow_the_likelihoods("winogrande", winogrande_docs(data_dir)["validation"], gold_index, data_dir)


def test_a_missing_mirror_file_is_named(tmp_path: Path):
    with pytest.raises(AdvisorError, match=r"benchmark file not found: .*winogrande/dev.jsonl"):
        score_task(ScriptedLM(choose=gold_index), "winogrande", EvalSettings(tasks=("winogrande",)), tmp_path)
