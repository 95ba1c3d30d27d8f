"""WinoGrande (forgetting): lm-eval's winogrande task, its dev split read from the mirror."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.prepare import WINOGRANDE_RESERVED_FROM
from tuner.scoring.benchmarks.base import Benchmark
from tuner.scoring.benchmarks.lm_eval_tasks import dataset_splits, mirror_file, read_jsonl, stock_task

if TYPE_CHECKING:
    import datasets

MIRROR_FILE = "winogrande/dev.jsonl"


def winogrande_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """WinoGrande dev, which the mirror keeps in the original winogrande_1.1 layout lm-eval reads."""
    return dataset_splits(validation=read_jsonl(mirror_file(data_dir, MIRROR_FILE)))


LM_TASK = stock_task("winogrande/default.yaml", winogrande_docs, "validation")
# acc, the figure the Open LLM Leaderboard reports.
WINOGRANDE = Benchmark(
    "winogrande",
    "WinoGrande",
    "forgetting",
    "acc",
    1267,
    (MIRROR_FILE,),
    LM_TASK,
    pool=WINOGRANDE_RESERVED_FROM,
    item_cost=25,
)
