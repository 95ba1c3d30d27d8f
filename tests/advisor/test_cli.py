"""`advisor tune` as a user meets it: bad input gives one line and exit 2, --json gives the recommendation."""

from __future__ import annotations

import json
import subprocess

import pytest

from advisor.cli import COMMANDS, main
from tests.conftest import run_cli, tune_command


@pytest.fixture
def common(data_dir, tmp_path):
    return ["tune", "--task", "math", "--trials", "1", "--data-dir", str(data_dir), "--out", str(tmp_path / "run")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "./no-such-model"], "advisor: error: model not found: './no-such-model' is not a built-in name"),
        (
            ["--model", "nobody/no-such-model"],
            "advisor: error: cannot load model 'nobody/no-such-model' (looked on the Hugging Face hub",
        ),
        (["--trial-tokens", "100"], "advisor: error: a trial budget of 100 tokens is below one optimizer step"),
        (["--storage", "notadb://x"], "advisor: error: cannot open study storage 'notadb://x'"),
        (["--variants", "lora,qlora"], "advisor: error: unknown LoRA variant qlora: choose from lora, rslora"),
        (["--budget", "1000"], "advisor: error: a study budget of 1,000 tokens is below one trial (16,384 tokens)"),
        (["--budget", "30 parsecs"], "advisor: error: --budget '30 parsecs': give positive training tokens"),
        (["--budget", "30m"], "advisor: error: --budget '30m': give positive training tokens"),
        (["--search-budget", "30 parsecs"], "advisor: error: --search-budget '30 parsecs': give positive training"),
        (["--alpha", "twice"], "advisor: error: --alpha takes a positive number"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(capsys, common, tmp_path, tiny_model, extra, message):
    args = [*common, "--model", str(tiny_model), *extra] if "--model" not in extra else [*common, *extra]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_and_unreadable_custom_file(capsys, tmp_path, tiny_model):
    out_dir = str(tmp_path / "run")
    code, _, err = run_cli(
        capsys, "tune", "--model", str(tiny_model), "--data-dir", str(tmp_path / "none"), "--out", out_dir
    )
    assert (
        code == 2 and err.strip() == f"advisor: error: data directory not found: {tmp_path / 'none'} (from --data-dir)"
    )
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    code, _, err = run_cli(
        capsys,
        "tune",
        "--task",
        "custom",
        "--data",
        str(tmp_path / "broken.jsonl"),
        "--model",
        str(tiny_model),
        "--out",
        out_dir,
    )
    assert code == 2 and err.startswith(f"advisor: error: cannot read {tmp_path / 'broken.jsonl'}")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--goal", "1.5"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "argument --goal: must be between 0 and 1, got 1.5" in err


@pytest.mark.parametrize(
    ("command", "spellings", "field"),
    [
        ("tune", ("--search-budget", "--budget"), "search_budget"),
        ("memory", ("--memory-budget", "--budget"), "memory_budget"),
        ("tune", ("--memory-budget",), "memory_budget"),
        ("train", ("--memory-budget",), "memory_budget"),
    ],
)
def test_each_budget_has_one_name_and_the_old_spelling_still_works(command, spellings, field):
    from advisor.cli import build_parser

    for spelling in spellings:
        assert getattr(build_parser().parse_args([command, spelling, "2h"]), field) == "2h"


def test_json_prints_the_recommendation_on_stdout(tiny_model, data_dir, tmp_path):
    options = ["--trials", "2", "--trial-tokens", "2048", "--batch-size", "2", "--seq-len", "128", "--json"]
    result = subprocess.run(
        tune_command(tiny_model, data_dir, tmp_path / "run", *options),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rec = json.loads(result.stdout)
    assert rec == json.loads((tmp_path / "run" / "recommendation.json").read_text())
    assert rec["trials"]["complete"] + rec["trials"]["pruned"] == 2 and rec["rank"] in (16, 256)
    assert "Trials" in result.stderr  # the summary table goes to stderr with --json


def test_tune_from_a_preset_tries_its_configuration_first(capsys, data_dir, tmp_path, tiny_model):
    preset = tmp_path / "preset.yaml"
    preset.write_text(
        "name: odd\ntask: math\nlora: {rank: 12, alpha: 6, targets: mlp}\nlearning_rate: 3.0e-3\n"
        "batch_size: 2\nseq_len: 64\n"
    )
    out = tmp_path / "run"
    args = ["tune", "--from-preset", str(preset), "--model", str(tiny_model), "--data-dir", str(data_dir)]
    code, _, err = run_cli(
        capsys, *args, "--trials", "1", "--trial-tokens", "256", "--score-items", "0", "--out", str(out)
    )
    assert code == 0, err
    trial = json.loads((out / "trials" / "trial_0000.json").read_text())
    # The preset's values lie outside the default space (rank 12; its alpha 6 = 0.5r joins the fixed alpha 32).
    assert trial["params"] == {"learning_rate": 3e-3, "rank": 12, "alpha": 6.0, "targets": "mlp"}
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["task"], settings["budget"]["batch_size"], settings["budget"]["seq_len"]) == ("math", 2, 64)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_help_fits_80_columns_on_a_wide_terminal(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main([command, "--help"] if command else ["--help"])
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 80, [line for line in lines if len(line) > 80]
