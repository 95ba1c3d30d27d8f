"""scripts/measured_preset.py: a shipped preset from a finished study and the full run trained from its pick."""

from __future__ import annotations

import json
from pathlib import Path

from advisor.presets import load_preset
from tests.advisor.commands.test_export_command import fabricate_run
from tests.conftest import load_script

CHANGE = {"score": 0.5, "stderr": 0.05, "base": 0.55, "base_stderr": 0.05, "change_stderr": 0.03, "paired": True}


def fabricate_full_run(train_dir: Path) -> None:
    train_dir.mkdir(parents=True)
    report = {
        "runtime": "CPU (2 threads, float32)",
        "training": {
            "steps": 92,
            "epochs": 2.0,
            "train_examples": 256,
            "train_tokens": 46000,
            "seconds_this_session": 611.0,
        },
        "scoring": {"limit": 30},
        "learning_benchmark": "gsm8k",
        "change_noise": {
            "learning": {**CHANGE, "score": 0.1, "base": 0.0, "change": 0.1, "within_noise": True},
            "general": {**CHANGE, "change": -0.05, "within_noise": True},
        },
    }
    (train_dir / "report.json").write_text(json.dumps(report), encoding="utf-8")


def test_a_measured_preset_keeps_the_pick_and_the_full_runs_epochs_and_says_its_figures(tmp_path, capsys):
    run_dir = fabricate_run(tmp_path / "run")
    fabricate_full_run(run_dir / "train")
    out = tmp_path / "math-measured.yaml"
    assert load_script("measured_preset").main([str(run_dir), "math-measured", "--out", str(out)]) == 0
    preset = load_preset(str(out))
    assert (preset.source, preset.name, preset.hardware, preset.train_examples) == (
        "measured",
        "math-measured",
        "cpu",
        7412,
    )
    assert (preset.recipe.learning_rate, preset.recipe.lora.rank, preset.recipe.epochs) == (2.5e-4, 64, 2)
    header = " ".join(line.strip("# ") for line in out.read_text(encoding="utf-8").split("\nname:")[0].splitlines())
    assert "trained it on 256 examples for 2 epochs (92 steps" in header
    assert "GSM8K: 0.100 ± 0.050 (base 0.000 ± 0.050), change +0.100 ± 0.030 paired, within noise" in header
    assert "the same 30 items per benchmark" in header and "advisor train --from" in header


def test_a_study_without_its_full_run_is_one_line_and_writes_nothing(tmp_path, capsys):
    run_dir = fabricate_run(tmp_path / "run")
    out = tmp_path / "x.yaml"
    assert load_script("measured_preset").main([str(run_dir), "x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("measured_preset: ") and "report.json not found" in err and len(err.splitlines()) == 1
    assert not out.exists()
