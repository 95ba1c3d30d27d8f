"""ARC-Challenge (forgetting): lm-eval's arc_challenge task, its test split read from AI2's files in the mirror."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.scoring.benchmarks.base import Benchmark
from tuner.scoring.benchmarks.lm_eval_tasks import dataset_splits, mirror_file, read_jsonl, stock_task

if TYPE_CHECKING:
    import datasets

MIRROR_FILE = "arc/ARC-Challenge-Test.jsonl"


def arc_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """ARC-Challenge test: AI2's nested records flattened to the hub layout (labels may be A-E or 1-5)."""
    docs = []
    for item in read_jsonl(mirror_file(data_dir, MIRROR_FILE)):
        choices = item["question"]["choices"]
        docs.append(
            {
                "id": item["id"],
                "question": item["question"]["stem"],
                "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                "answerKey": item["answerKey"],
            }
        )
    return dataset_splits(test=docs)


LM_TASK = stock_task("arc/arc_challenge.yaml", arc_docs, "test")
# acc_norm, the figure the Open LLM Leaderboard reports.
ARC_CHALLENGE = Benchmark(
    "arc_challenge", "ARC-Challenge", "forgetting", "acc_norm", 1172, (MIRROR_FILE,), LM_TASK, item_cost=60
)
