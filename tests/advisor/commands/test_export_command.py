"""`advisor export`: a shipped preset, a study's recommendation or a preset file exported from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.exports import carried_fields, read_export
from advisor.presets import load_preset
from tests.advisor.exports.shared import comments
from tests.conftest import run_cli


def test_cli_exports_a_shipped_preset(capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "--preset", "math-24gib", "--format", "axolotl", "--out", str(tmp_path))
    assert code == 0 and err == ""
    assert f"wrote {tmp_path / 'axolotl.yaml'}" in out and f"axolotl train {tmp_path / 'axolotl.yaml'}" in out
    assert read_export(tmp_path) == carried_fields(load_preset("math-24gib"), "axolotl")
    assert "from the shipped preset math-24gib (presets/math-24gib.yaml)" in (tmp_path / "axolotl.yaml").read_text()


def test_cli_json_lists_the_files(capsys, tmp_path):
    code, out, _ = run_cli(
        capsys, "export", "--preset", "code-cpu", "--format", "litgpt", "--out", str(tmp_path), "--json"
    )
    assert code == 0 and json.loads(out) == [str(tmp_path / "litgpt-lora.yaml"), str(tmp_path / "preset.yaml")]


def fabricate_run(run_dir: Path) -> Path:
    """A finished study's run directory, as tuner.study.run writes it, without running one."""
    run_dir.mkdir(parents=True)
    recommendation = {
        "task": "math",
        "model": "smollm2-135m-instruct",
        "trial": 7,
        "learning_rate": 2.5e-4,
        "rank": 64,
        "alpha": 128.0,
        "targets": "all",
        "target_modules": "all-linear",
        "epochs": 4,
        "objective": {"goal": 0.5, "value": 1.234},
        "run_dir": str(run_dir),
        "runtime": "CPU (2 threads, float32)",
        "data": {"train_examples": 7412, "train_tokens": 900000, "tokens_per_second": 200.0},
    }
    settings = {
        "task": "math",
        "model": "smollm2-135m-instruct",
        "trials": 12,
        "budget": {"train_tokens": 65536, "batch_size": 4, "seq_len": 256, "warmup_ratio": 0.1},
        "memory_budget": None,
    }
    (run_dir / "recommendation.json").write_text(json.dumps(recommendation), encoding="utf-8")
    (run_dir / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    return run_dir


def test_cli_exports_a_finished_study(capsys, tmp_path):
    run_dir = fabricate_run(tmp_path / "run")
    code, _, err = run_cli(capsys, "export", "--from", str(run_dir), "--format", "trl", "--out", str(tmp_path / "out"))
    assert code == 0 and err == ""
    assert read_export(tmp_path / "out") == {
        "rank": 64,
        "alpha": 128.0,
        "targets": "all",
        "variant": "lora",
        "dropout": 0.0,
        "learning_rate": 2.5e-4,
        "epochs": 4,
        "batch_size": 4,
        "seq_len": 256,
        "warmup_ratio": 0.1,
        "hardware": "cpu",  # where the study ran
        "gradient_checkpointing": False,
        "quantize": None,
    }
    preset = load_preset(str(tmp_path / "out"))
    assert preset.source == "study" and preset.extra["trial"] == 7 and preset.model == "smollm2-135m-instruct"
    assert preset.train_examples == 7412  # what tools that count warm-up in steps count it for
    assert f"from trial 7 of the study in {run_dir}" in comments(tmp_path / "out" / "trl-sft.yaml")


def test_a_moved_run_directory_is_named_as_given_and_the_preset_keeps_where_the_study_ran(capsys, tmp_path):
    recorded = fabricate_run(tmp_path / "run")
    moved = recorded.rename(tmp_path / "moved")
    code, _, err = run_cli(
        capsys, "export", "--from", str(moved), "--format", "axolotl", "--out", str(tmp_path / "out")
    )
    assert code == 0 and err == ""
    assert f"from trial 7 of the study in {moved}" in comments(tmp_path / "out" / "axolotl.yaml")
    assert load_preset(str(tmp_path / "out")).notes == f"Recommended by trial 7 of the study in {recorded}."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "math-24gib", "--format", "unsloth"], "argument --format: invalid choice: 'unsloth'"),
        (["--from", "no-such-run", "--format", "peft"], "advisor: error: no run directory no-such-run"),
        (["--format", "peft"], "one of the arguments --from --preset is required"),
        (["--preset", "math-24gib", "--from", "x", "--format", "peft"], "not allowed with argument"),
        (["--preset", "no-such-preset", "--format", "peft"], "advisor: error: no preset 'no-such-preset'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "export", *args, "--out", str(tmp_path / "out"))
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_run_without_a_recommendation_and_a_malformed_preset(capsys, tmp_path):
    (tmp_path / "unfinished").mkdir()
    code, _, err = run_cli(capsys, "export", "--from", str(tmp_path / "unfinished"), "--format", "peft", "--out", "x")
    unfinished = tmp_path / "unfinished"
    assert code == 2 and err == f"advisor: error: {unfinished} has no recommendation.json: has its study finished?\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: mine\ntask: math\nlora: {rank: 0, alpha: 32, targets: all}\nlearning_rate: 1.0e-4\n")
    code, _, err = run_cli(capsys, "export", "--preset", str(bad), "--format", "axolotl", "--out", str(tmp_path / "o"))
    assert code == 2 and err == f"advisor: error: preset {bad}: rank must be at least 1, got 0\n"
    assert not (tmp_path / "o").exists()


def test_hardware_moves_a_cpu_study_to_a_gpu_in_the_tool(capsys, tmp_path):
    """A study found on a CPU, trained in the tool on a GPU: bf16 there, and the preset beside it says gpu."""
    run_dir = fabricate_run(tmp_path / "run")
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "export", "--from", str(run_dir), "--format", "trl", "--hardware", "gpu", "--out", str(out)
    )
    assert code == 0 and err == ""
    assert read_export(out)["hardware"] == "gpu" and load_preset(str(out)).hardware == "gpu"
    assert "exported for a GPU" in comments(out / "trl-sft.yaml")
