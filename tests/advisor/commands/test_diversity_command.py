"""`advisor eval --samples K` on a tiny random model: pass@k and distinct solutions, reproducible by seed; answers
scored as `advisor eval` scores them; bad input in one line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

GSM8K_RUN = ("--samples", "3", "--temperature", "1.0", "--tasks", "gsm8k", "--limit", "2", "--json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "0"], "advisor eval: error: argument --samples: must be at least 1, got 0"),
        (["--samples", "-2"], "advisor eval: error: argument --samples: must be at least 1, got -2"),
        (["--samples", "4", "--temperature", "0"], "advisor: error: temperature 0 is greedy decoding, whose 4 draws"),
        (
            ["--samples", "2", "--tasks", "hellaswag"],
            "advisor: error: hellaswag scores the likelihood of given choices",
        ),
        (["--samples", "2", "--tasks", "humaneval"], "advisor: error: drawing HumanEval samples runs their code; pass"),
        (["--samples", "2", "--adapter", "/no/adapter"], "advisor: error: adapter directory not found: /no/adapter"),
        (["--samples", "2", "--tuned", "/no/tuned"], "advisor: error: tuned model directory not found: /no/tuned"),
        (["--tuned", "/no/tuned"], "advisor: error: --tuned is drawn from only with --samples K"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = run_cli(capsys, "eval", *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""


@pytest.fixture(scope="module")
def gsm8k_report(tiny_model: Path, data_dir: Path) -> dict:
    """The JSON report of GSM8K_RUN on the tiny model (run once for the module)."""
    from advisor.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = main(["eval", "--model", str(tiny_model), "--data-dir", str(data_dir), *GSM8K_RUN])
    assert code == 0
    return json.loads(stdout.getvalue())


def test_report_has_pass_at_1_to_3_and_distinct_counts_per_problem(gsm8k_report):
    result = gsm8k_report["results"]["gsm8k"]["base"]
    assert set(gsm8k_report["results"]["gsm8k"]) == {"base"}
    assert set(result["pass_at_k"]) == {"pass@1", "pass@2", "pass@3"}
    assert len(result["problems"]) == 2 and result["samples_per_problem"] == 3
    assert all(1 <= count <= 3 for count in result["distinct"] + result["distinct_answers"])
    assert all(0 <= figure["mean"] <= 1 for figure in result["pass_at_k"].values())
    assert gsm8k_report["settings"]["temperature"] == 1.0 and gsm8k_report["settings"]["samples"] == 3


def test_the_same_seed_draws_the_same_report(capsys, gsm8k_report, tiny_model, data_dir):
    code, out, _ = run_cli(capsys, "eval", "--model", str(tiny_model), "--data-dir", str(data_dir), *GSM8K_RUN)
    assert code == 0 and json.loads(out) == gsm8k_report


def test_adapter_and_tuned_model_are_columns_beside_the_base(capsys, tiny_model, tiny_adapter, data_dir):
    from advisor.commands.diversity import evaluate_diversity
    from advisor.commands.evaluate import EvalArgs

    args = EvalArgs(
        model=str(tiny_model),
        adapter=tiny_adapter,
        tuned=tiny_model,  # the base weights again: drawn with the same seed, the same answers
        tasks="gsm8k",
        samples=2,
        temperature=1.0,
        limit=2,
        seed=3,
        data_dir=str(data_dir),
        json=True,
    )
    code = evaluate_diversity(args, max_new_tokens=8)
    results = json.loads(capsys.readouterr().out)["results"]["gsm8k"]
    assert code == 0 and list(results) == ["base", "adapter", "tuned"]
    assert results["tuned"] == results["base"]
    assert set(results["adapter"]["pass_at_k"]) == {"pass@1", "pass@2"}


def test_table_has_a_row_per_k_and_a_column_per_model(capsys, tiny_model, data_dir):
    from advisor.commands.diversity import evaluate_diversity
    from advisor.commands.evaluate import EvalArgs

    args = EvalArgs(
        model=str(tiny_model),
        tuned=tiny_model,
        tasks="gsm8k",
        samples=5,
        temperature=0.7,
        limit=2,
        data_dir=str(data_dir),
    )
    code = evaluate_diversity(args, max_new_tokens=4)
    out = capsys.readouterr().out
    assert code == 0 and "GSM8K, 2 problems: 5 answers each at temperature 0.7" in out
    lines = out.splitlines()
    assert [line.split()[0] for line in lines if line.strip().startswith("pass@")] == [
        "pass@1",
        "pass@2",
        "pass@4",
        "pass@5",
    ]
    assert any("base" in line and "tuned" in line for line in lines)
    assert any("distinct solutions" in line for line in lines)


def test_humaneval_answers_run_in_the_sandbox(capsys, tiny_model, data_dir):
    from advisor.commands.diversity import evaluate_diversity
    from advisor.commands.evaluate import EvalArgs

    args = EvalArgs(
        model=str(tiny_model),
        tasks="humaneval",
        samples=2,
        temperature=1.0,
        limit=1,
        allow_code_execution=True,
        data_dir=str(data_dir),
        json=True,
    )
    code = evaluate_diversity(args, max_new_tokens=8)
    result = json.loads(capsys.readouterr().out)["results"]["humaneval"]["base"]
    assert code == 0 and result["correct"] == [0] and 1 <= result["distinct"][0] <= 2  # random weights write no code
    assert result["distinct_answers"] is None


# Sampled answers are judged by the benchmark's own filters and metric, as `advisor eval` judges a greedy one.


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_gsm8k_answers_are_scored_by_flexible_extraction(prompt_format, tiny_tokenizer, data_dir):
    from tuner.scoring.benchmarks import EvalSettings, build_task
    from tuner.scoring.sampling import score_samples, task_requests

    settings = EvalSettings(tasks=("gsm8k",), limit=2, seed=0, prompt_format=prompt_format)
    task = build_task("gsm8k", data_dir, prompt_format)
    problems, requests = task_requests(task, "gsm8k", settings, tiny_tokenizer)
    finals = [request.doc["answer"].split("#### ")[-1] for request in requests]
    answers = [[f"So it is ${final}.", "It is 123456789", f"#### {final}"] for final in finals]
    drawn = score_samples(task, "gsm8k", problems, requests, answers)
    assert [problem.problem for problem in drawn] == problems and len(set(problems)) == 2
    assert [[sample.passed for sample in problem.samples] for problem in drawn] == [[True, False, True]] * 2
    assert [problem.samples[1].answer for problem in drawn] == ["123456789"] * 2


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_humaneval_answers_pass_when_the_tests_pass(prompt_format, tiny_tokenizer, data_dir):
    from tuner.scoring.benchmarks import EvalSettings, build_task
    from tuner.scoring.sampling import score_samples, task_requests

    settings = EvalSettings(tasks=("humaneval",), limit=2, prompt_format=prompt_format, allow_code_execution=True)
    task = build_task("humaneval", data_dir, prompt_format)
    problems, requests = task_requests(task, "humaneval", settings, tiny_tokenizer)
    if prompt_format == "chat":  # the answer's code block was opened in the prompt
        assert requests[0].args[0].endswith("```python\n")
    solutions = [
        r.doc["canonical_solution"] if prompt_format == "plain" else r.doc["prompt"] + r.doc["canonical_solution"]
        for r in requests
    ]
    answers = [[solution, "    return None\n"] for solution in solutions]
    drawn = score_samples(task, "humaneval", problems, requests, answers)
    assert [[sample.passed for sample in problem.samples] for problem in drawn] == [[True, False]] * 2
