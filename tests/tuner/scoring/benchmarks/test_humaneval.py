"""HumanEval: the wheel's problems, pass@1 with completions run in the sandbox, samples made elsewhere scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tuner.scoring.benchmarks.scripted import ScriptedLM
from tuner.errors import AdvisorError
from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings, subset_indices
from tuner.scoring.benchmarks.humaneval import humaneval_docs, score_samples
from tuner.scoring.evaluation import score_task


def test_problems_come_from_the_wheel():
    assert len(humaneval_docs()["test"]) == 164


def test_humaneval_pass_at_1_runs_completions_in_the_sandbox(data_dir: Path):
    settings = EvalSettings(tasks=("humaneval",), limit=4, seed=0, prompt_format="plain", allow_code_execution=True)
    problems = humaneval_docs()["test"]
    chosen = [problems[i] for i in subset_indices(BENCHMARKS["humaneval"], 4, 0)]
    right = {p["task_id"] for p in chosen[:2]}

    def answer(doc: dict[str, Any]) -> str:
        if doc["task_id"] in right:
            return doc["canonical_solution"]
        return "    while True:\n        pass\n"  # never ends: the sandbox's time limit scores it failed

    result = score_task(ScriptedLM(answer=answer), "humaneval", settings, data_dir)
    assert result.score == pytest.approx(0.5)


def test_humaneval_chat_answers_define_the_function_again(data_dir: Path):
    settings = EvalSettings(tasks=("humaneval",), limit=2, seed=1, allow_code_execution=True)
    problems = humaneval_docs()["test"]
    chosen = [problems[i] for i in subset_indices(BENCHMARKS["humaneval"], 2, 1)]

    def answer(doc: dict[str, Any]) -> str:
        header = doc["prompt"][doc["prompt"].index(f"def {doc['entry_point']}") :]
        body = doc["canonical_solution"] if doc["task_id"] == chosen[0]["task_id"] else "    return None\n"
        return header + body

    result = score_task(ScriptedLM(answer=answer), "humaneval", settings, data_dir)
    assert result.score == pytest.approx(0.5)


def _samples_file(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_samples_made_elsewhere_score_pass_at_k(tmp_path: Path):
    problems = humaneval_docs()["test"]
    good, other = problems[2], problems[7]
    rows = [
        {"task_id": good["task_id"], "completion": good["canonical_solution"]},
        {"task_id": good["task_id"], "completion": "    return 0.5\n"},
        {"task_id": other["task_id"], "completion": other["canonical_solution"]},
        {"task_id": other["task_id"], "completion": other["canonical_solution"]},
    ]
    result = score_samples(_samples_file(tmp_path / "s.jsonl", rows))
    assert (result["samples"], result["problems"]) == (4, 2)
    assert result["pass@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert "pass@10" not in result  # two samples per problem: pass@k only up to k = 2
    assert result["tasks"][good["task_id"]] == {"samples": 2, "passed": 1}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["{not json"], "line 1: not a JSON object"),
        ([{"task_id": "HumanEval/0"}, {"task_id": "HumanEval/0", "completion": 3}], "line 1: expected an object"),
        ([{"task_id": "HumanEval/999", "completion": ""}], "unknown HumanEval task_id 'HumanEval/999'"),
        ([], "holds no samples"),
    ],
)
def test_bad_sample_files_are_named_with_their_line(tmp_path: Path, rows: list[object], message: str):
    with pytest.raises(AdvisorError, match=message):
        score_samples(_samples_file(tmp_path / "bad.jsonl", rows))
    with pytest.raises(AdvisorError, match="samples file not found"):
        score_samples(tmp_path / "missing.jsonl")
