"""HellaSwag (forgetting): lm-eval's hellaswag task, its validation split read from the mirror's 6-line text file."""

from __future__ import annotations

import bz2
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.prepare import HELLASWAG_RESERVED_FROM
from tuner.scoring.benchmarks.base import Benchmark
from tuner.scoring.benchmarks.lm_eval_tasks import dataset_splits, mirror_file, stock_task

if TYPE_CHECKING:
    import datasets

MIRROR_FILE = "hellaswag/hellaswag_val_full.txt.bz2"


def hellaswag_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """HellaSwag validation from the mirror's 6-line text format, cleaned as lm-eval's `preprocess` does."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    lines = bz2.decompress(mirror_file(data_dir, MIRROR_FILE).read_bytes())
    text = lines.decode("utf-8").splitlines()
    docs = []
    for start in range(0, len(text) - 5, 6):
        context, gold, *endings = text[start : start + 6]
        docs.append({"query": preprocess(context), "choices": [preprocess(e) for e in endings], "label": int(gold)})
    return dataset_splits(validation=docs)


LM_TASK = stock_task("hellaswag/hellaswag.yaml", hellaswag_docs, "validation")
# acc_norm, the figure the Open LLM Leaderboard reports.
HELLASWAG = Benchmark(
    "hellaswag",
    "HellaSwag",
    "forgetting",
    "acc_norm",
    10042,
    (MIRROR_FILE,),
    LM_TASK,
    pool=HELLASWAG_RESERVED_FROM,
    item_cost=160,
)
