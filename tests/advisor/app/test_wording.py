"""The words the app and the CLI share for the paper's comparisons: a change with its paired error, the reference
arm; and that they come without a terminal library."""

from __future__ import annotations

import subprocess
import sys

from advisor.app.wording import change_text, reference_lines
from tuner.records.reference import ReferenceSummary
from tuner.records.scores import ScoreChange


def test_the_wording_imports_neither_rich_nor_textual_nor_torch():
    probe = "import sys, advisor.app.wording; print(*(m for m in ('rich', 'textual', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == []


def test_a_paired_change_says_so_and_whether_it_is_beyond_noise():
    figure = {"score": 0.4, "stderr": 0.075, "base": 0.5, "base_stderr": 0.078, "change": -0.1}
    paired = {**figure, "change_stderr": 0.032, "paired": True, "within_noise": False}
    assert change_text("general mean", ScoreChange.from_json(paired)) == (
        "general mean 0.400 ± 0.075 (base 0.500 ± 0.078): -0.100 ± 0.032 paired, beyond noise (2 standard errors)"
    )
    unpaired = {**figure, "change_stderr": 0.108, "paired": False, "within_noise": True}
    assert change_text("general mean", ScoreChange.from_json(unpaired)).endswith(": -0.100 ± 0.108, within noise")


def test_the_reference_arm_gives_the_rate_ratio_and_the_loss_gaps():
    reference = {
        "method": "full",
        "runs": {
            "0.0003": {"rate": 3e-4, "target_loss": 1.4826, "general_loss": 3.1, "stopped": None},
            "0.0001": {"rate": 1e-4, "target_loss": 1.4505, "general_loss": 3.0, "stopped": None},
            "0.001": {"rate": 1e-3, "target_loss": None, "general_loss": None, "stopped": "diverged"},
        },
        "best_rate": 1e-4,
        "lora_rate": 1e-3,
        "rate_ratio": 10.0,
        "target_loss": {
            "lora": 1.469,
            "full": 1.4505,
            "gap": 0.0185,
            "confirm": {"lora": 1.47, "full": 1.45, "gap": 0.02, "stderr": 0.004, "rows": 32},
        },
        "general_loss": {"lora": 2.95, "full": 3.0, "gap": -0.05},
    }
    summary = ReferenceSummary.from_json(reference)
    assert summary.to_json() == reference  # the file's keys and values, whole
    assert reference_lines(summary) == [
        "  reference, full fine-tuning; held-out loss by rate:",
        "    0.0001 1.4505, 0.0003 1.4826, 0.001 - (stopped)",
        "    LoRA's rate 0.001 / full's best 0.0001 = 10x",
        "    (LoRA Without Regret: about 10x; Biderman et al. 2024: 4-10x)",
        "    task loss, LoRA - full: +0.0200 ± 0.0040, beyond noise (32 rows, paired)",
        "    general-text loss, LoRA - full: -0.0500 (no confirm rows to pair)",
    ]
    assert all(len(line) <= 80 for line in reference_lines(summary))
    assert reference_lines(None) == []


def test_the_reference_arm_gives_full_fine_tunings_scores_and_the_score_gaps_within_80_columns():
    def change(score: float, base: float, error: float, within_noise: bool) -> dict:
        return {
            "score": score,
            "stderr": 0.08,
            "base": base,
            "base_stderr": 0.08,
            "change": score - base,
            "change_stderr": error,
            "paired": True,
            "within_noise": within_noise,
        }

    reference = {
        "runs": {"0.0001": {"rate": 1e-4, "target_loss": 1.4505, "general_loss": 3.0, "stopped": None}},
        "best_rate": 1e-4,
        "lora_rate": 1e-3,
        "rate_ratio": 10.0,
        "target_loss": {"lora": 1.469, "full": 1.4505, "gap": 0.0185},
        "general_loss": {"lora": 2.95, "full": 3.0, "gap": -0.05},
        "score_items": 40,
        "general_score": {
            "full": change(0.417, 0.444, 0.041, True),
            "lora": 0.431,
            "lora_stderr": 0.08,
            "gap": 0.014,
            "stderr": 0.02,
            "paired": True,
            "within_noise": True,
        },
        "learning_score": {
            "benchmark": "humaneval",
            "full": change(0.25, 0.1, 0.05, False),
            "lora": 0.15,
            "lora_stderr": 0.06,
            "gap": -0.1,
            "stderr": 0.09,
            "paired": False,
            "within_noise": True,
        },
    }
    assert ReferenceSummary.from_json(reference).to_json() == {"method": "full", **reference}
    lines = reference_lines(ReferenceSummary.from_json(reference))
    assert lines[-5:] == [
        "    full fine-tuning (lr 0.0001) against the base, 40 items per benchmark:",
        "      general 0.417 ± 0.080 (base 0.444): -0.027 ± 0.041 paired, within noise",
        "      HumanEval 0.250 ± 0.080 (base 0.100): +0.150 ± 0.050 paired, beyond noise",
        "    general score, LoRA - full: +0.014 ± 0.020 (paired), within noise",
        "    learning (HumanEval), LoRA - full: -0.100 ± 0.090, within noise",
    ]
    assert all(len(line) <= 80 for line in lines[-5:])
    # Not scored (the pick had no scores): the loss lines alone.
    scored = ("score_items", "general_score", "learning_score")
    unscored = {key: value for key, value in reference.items() if key not in scored}
    assert reference_lines(ReferenceSummary.from_json(unscored)) == lines[:-5]
