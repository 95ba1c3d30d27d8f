"""GSM8K: the mirror's train and test splits, and strict and flexible answer extraction on hand-made answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tuner.scoring.benchmarks.scripted import ScriptedLM
from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings, subset_indices
from tuner.scoring.benchmarks.gsm8k import gsm8k_docs
from tuner.scoring.evaluation import score_task


def test_mirror_reader_gives_lm_eval_layout(data_dir: Path):
    gsm8k = gsm8k_docs(data_dir)
    assert (len(gsm8k["train"]), len(gsm8k["test"])) == (7473, 1319)


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_gsm8k_strict_and_flexible_extraction(prompt_format: str, data_dir: Path):
    settings = EvalSettings(tasks=("gsm8k",), limit=3, seed=0, prompt_format=prompt_format)
    test = gsm8k_docs(data_dir)["test"]
    docs = [test[i] for i in subset_indices(BENCHMARKS["gsm8k"], 3, 0)]
    finals = [doc["answer"].split("#### ")[-1] for doc in docs]
    outputs = {
        docs[0]["question"]: f"Adding up gives {finals[0]}.\n#### {finals[0]}",  # both extractions right
        docs[1]["question"]: f"So the answer is {finals[1]}.",  # only the last number: flexible right
        docs[2]["question"]: "#### 123456789",  # wrong
    }
    result = score_task(ScriptedLM(answer=lambda doc: outputs[doc["question"]]), "gsm8k", settings, data_dir)
    assert result.metrics["exact_match,strict-match"] == pytest.approx(1 / 3)
    assert result.metrics["exact_match,flexible-extract"] == pytest.approx(2 / 3)
    assert result.score == pytest.approx(2 / 3)
    # Each item's headline figure (flexible extraction), by its index in the test set: what a paired test compares.
    indices = subset_indices(BENCHMARKS["gsm8k"], 3, 0)
    assert result.item_scores == {str(indices[0]): 1.0, str(indices[1]): 1.0, str(indices[2]): 0.0}
