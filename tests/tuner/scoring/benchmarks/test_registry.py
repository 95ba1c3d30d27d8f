"""The registry: every benchmark declared once, its mirror files present, its lm-eval task built by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import AdvisorError
from tuner.scoring.benchmarks import BENCHMARKS, FORGETTING_TASKS, LEARNING_TASK, PROMPT_FORMATS, REGISTERED, build_task


def test_names_are_unique_and_keep_their_order():
    assert [benchmark.name for benchmark in REGISTERED] == list(BENCHMARKS)
    assert list(BENCHMARKS) == ["hellaswag", "winogrande", "arc_challenge", "gsm8k", "humaneval"]


def test_roles_match_the_forgetting_and_learning_benchmarks():
    assert FORGETTING_TASKS == tuple(name for name, b in BENCHMARKS.items() if b.role == "forgetting")
    assert all(BENCHMARKS[name].role == "learning" for name in LEARNING_TASK.values())


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_mirror_files_are_in_the_mirror(name: str, data_dir: Path):
    missing = [relative for relative in BENCHMARKS[name].mirror_files if not (data_dir / relative).is_file()]
    assert missing == []


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_build_task_gives_the_lm_eval_task_of_the_declared_size(name: str, data_dir: Path):
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import Task

    for prompt_format in PROMPT_FORMATS:
        task = build_task(name, data_dir, prompt_format)
        assert isinstance(task, Task) and task.config.task == name
        assert len(task.eval_docs) == BENCHMARKS[name].size


def test_build_task_refuses_an_unknown_name_or_prompt_format():
    with pytest.raises(AdvisorError, match="unknown benchmark 'mmlu'"):
        build_task("mmlu", None)
    with pytest.raises(AdvisorError, match="unknown prompt format 'json': choose from chat, plain"):
        build_task("gsm8k", None, "json")
