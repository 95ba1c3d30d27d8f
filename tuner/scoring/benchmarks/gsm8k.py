"""GSM8K (learning, math): lm-eval's gsm8k task, chat zero-shot or plain 5-shot, read from the mirror."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.scoring.benchmarks.base import Benchmark
from tuner.scoring.benchmarks.lm_eval_tasks import (
    configured_task,
    dataset_splits,
    mirror_dataset,
    mirror_file,
    read_jsonl,
    stock_config,
)

if TYPE_CHECKING:
    import datasets
    from lm_eval.api.task import Task

GSM8K_MAX_TOKENS = 256
TEST_FILE = "gsm8k/test.jsonl"
TRAIN_FILE = "gsm8k/train.jsonl"


def gsm8k_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """GSM8K test (and train, for few-shot examples) from the mirror."""
    return dataset_splits(
        train=read_jsonl(mirror_file(data_dir, TRAIN_FILE)),
        test=read_jsonl(mirror_file(data_dir, TEST_FILE)),
    )


def gsm8k_task(data_dir: Path | None, prompt_format: str) -> Task:
    """lm-eval's gsm8k task in the prompt format, from the mirror when `data_dir` is given."""
    config = stock_config("gsm8k/gsm8k.yaml")
    config["generation_kwargs"] = {**config["generation_kwargs"], "max_gen_toks": GSM8K_MAX_TOKENS}
    if prompt_format == "chat":
        # Zero-shot through the chat template: the question alone, as the study's training data asks it.
        config.update(doc_to_text="{{question}}", num_fewshot=0)
    if data_dir is not None:
        config.update(custom_dataset=mirror_dataset(gsm8k_docs, data_dir), dataset_kwargs=None)
    return configured_task(config)


# flexible-extract (the last number of the answer) rather than strict "#### N": it scores the
# arithmetic, not whether the model learned GSM8K's answer format; both are reported.
GSM8K = Benchmark(
    "gsm8k",
    "GSM8K",
    "learning",
    "exact_match,flexible-extract",
    1319,
    (TEST_FILE, TRAIN_FILE),
    gsm8k_task,
    generates=True,
    item_cost=470,
)
