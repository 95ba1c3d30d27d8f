"""HellaSwag: the mirror's text file in lm-eval's layout, and scores that follow the model's likelihoods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tuner.scoring.benchmarks.scripted import check_scores_follow_the_likelihoods
from tuner.scoring.benchmarks.hellaswag import hellaswag_docs


def gold_index(doc: dict[str, Any]) -> int:
    return int(doc["label"])


def test_mirror_reader_gives_lm_eval_layout(data_dir: Path):
    hellaswag = hellaswag_docs(data_dir)["validation"]
    assert len(hellaswag) == 10042
    first = hellaswag[0]
    assert first["query"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert first["label"] == 3 and first["choices"][3] == "starts pulling up roofing on a roof."


def test_multiple_choice_scores_follow_the_likelihoods(data_dir: Path):
    check_scores_follow_the_likelihoods("hellaswag", hellaswag_docs(data_dir)["validation"], gold_index, data_dir)
