"""`advisor train` as a user meets it: from a finished study, from a preset, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

TINY = ("--train-examples", "8", "--seq-len", "64", "--batch-size", "2", "--epochs", "1", "--save-steps", "2")


def test_train_from_a_finished_study_continues_its_settings(capsys, tiny_model: Path, data_dir: Path, tmp_path: Path):
    run_dir = tmp_path / "study"
    common = ("--model", str(tiny_model), "--data-dir", str(data_dir))
    tune = ("tune", "--task", "math", "--trials", "1", "--trial-tokens", "512", "--seq-len", "64", "--batch-size", "2")
    code, _, err = run_cli(capsys, *tune, *common, "--score-items", "0", "--out", str(run_dir))
    assert code == 0, err
    recommendation = json.loads((run_dir / "recommendation.json").read_text())

    code, out, err = run_cli(
        capsys, "train", "--from", str(run_dir), "--data-dir", str(data_dir), *TINY, "--no-eval", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["out_dir"] == str(run_dir / "train")
    trained = report["settings"]
    assert trained["model"] == str(tiny_model)  # the study's model, without --model
    assert (trained["lora"]["rank"], trained["lora"]["alpha"], trained["learning_rate"]) == (
        recommendation["rank"],
        recommendation["alpha"],
        recommendation["learning_rate"],
    )
    assert report["training"]["steps"] == 4 and "scores" not in report
    assert "note: 1 epoch(s); Biderman et al. 2024 train LoRA IFT for at least 4" in err
    assert (run_dir / "train" / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "train" / "report.md").read_text().startswith("# Full run: math")

    # The paper's reference on the same data: every weight trained at LoRA's rate / 10 (LoRA Without Regret).
    full_args = ("--method", "full", "--no-eval", "--json", "--out", str(tmp_path / "full"))
    code, out, err = run_cli(capsys, "train", "--from", str(run_dir), "--data-dir", str(data_dir), *TINY, *full_args)
    assert code == 0, err
    report = json.loads(out)
    assert report["settings"]["method"] == "full" and "lora" not in report["settings"]
    assert report["settings"]["learning_rate"] == pytest.approx(recommendation["learning_rate"] / 10)
    assert report["model_dir"] == str(tmp_path / "full" / "model") and report["adapter"] is None
    assert (tmp_path / "full" / "model" / "config.json").is_file()


def test_train_from_a_preset_with_changes(capsys, tiny_model: Path, data_dir: Path, tmp_path: Path):
    preset = tmp_path / "mine.yaml"
    preset.write_text(
        "name: mine\ntask: math\nlora: {rank: 4, alpha: 8, targets: mlp}\nlearning_rate: 3.0e-4\nepochs: 2\n"
    )
    out = tmp_path / "run"
    args = ("train", "--preset", str(preset), "--model", str(tiny_model), "--data-dir", str(data_dir), *TINY)
    code, output, err = run_cli(capsys, *args, "--rank", "2", "--no-eval", "--out", str(out), "--json")
    assert code == 0, err
    settings = json.loads(output)["settings"]
    assert settings["lora"] == {"rank": 2, "alpha": 4.0, "targets": "mlp", "dropout": 0.0}  # alpha stays 2r
    assert (settings["learning_rate"], settings["epochs"]) == (3e-4, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "{tmp}/none"), "advisor: error: no run directory {tmp}/none"),
        (("--from", "{tmp}"), "advisor: error: {tmp} has no recommendation.json: has its study finished?"),
        (("--preset", "no-such-preset"), "advisor: error: no preset 'no-such-preset'"),
        (("--preset", "{tmp}/bad.yaml"), "advisor: error: preset {tmp}/bad.yaml is not valid YAML at line 2"),
        ((), "advisor: error: say what to train: --from RUN_DIR, --preset NAME, or --task code|math|custom"),
        (
            ("--task", "math", "--learning-rate", "3"),
            "advisor train: error: argument --learning-rate: must be between 0",
        ),
        (("--from", "{tmp}", "--preset", "math-24gib"), "advisor train: error: argument --preset: not allowed with"),
        (
            ("--task", "math", "--method", "full", "--rank", "8"),
            "advisor: error: --rank set a LoRA adapter; full fine-tuning trains every weight",
        ),
        (("--task", "math", "--memory-budget", "lots"), "advisor: error: --memory-budget: not a memory size: 'lots'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path: Path, args: tuple[str, ...], message: str):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    code, _, err = run_cli(capsys, "train", *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and err.startswith(message.format(tmp=tmp_path)), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_run_over_its_memory_budget_is_refused_before_anything_is_written(
    capsys, tiny_model: Path, data_dir: Path, tmp_path: Path
):
    out = tmp_path / "run"
    args = ("train", "--task", "math", "--model", str(tiny_model), "--data-dir", str(data_dir), "--out", str(out))
    code, _, err = run_cli(capsys, *args, "--method", "full", "--memory-budget", "1MiB")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("advisor: error: full fine-tuning at 4 x 512 tokens needs an estimated ")
    assert "over the budget of 1 MiB; LoRA r=16 on all linear layers needs " in err
    assert not out.exists()
