"""Full fine-tuning as a study's reference arm: its rates, its summary beside the pick, and a tiny-model study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.confirm import paired_difference
from tuner.reference import rate_key, reference_rates, reference_summary


def test_the_reference_rates_read_the_10x_rule_backwards_and_add_the_papers():
    # LoRA's 1e-3 on math: 1e-4 and 3x either side, and the authors' full fine-tuning rate for math, 1e-5.
    assert reference_rates(1e-3, "math") == (1e-5, 3.33e-5, 1e-4, 3e-4)
    # On code the authors' 5e-5 lies within 1.5x of 6e-5, already tried: three rates.
    assert reference_rates(2e-4, "code") == (6.67e-6, 2e-5, 6e-5)
    assert reference_rates(2e-4, "custom") == reference_rates(2e-4, "code")
    assert rate_key(3.33e-5) == "3.33e-05"


def run(rate: float, target: float | None, general: float | None, stopped: str | None = None, **extra) -> dict:
    return {"rate": rate, "target_loss": target, "general_loss": general, "stopped": stopped, **extra}


def test_the_summary_takes_the_best_finished_rate_and_pairs_the_confirm_rows():
    lora_rows = {"target": [[10.0, 10], [12.0, 10], [9.0, 10]], "general": [[30.0, 10], [31.0, 10], [29.0, 10]]}
    full_rows = {"target": [[9.0, 10], [11.5, 10], [8.0, 10]], "general": [[31.0, 10], [32.5, 10], [29.5, 10]]}
    runs = {
        "1e-05": run(1e-5, 1.30, 3.00),
        "3e-05": run(3e-5, 1.10, 3.05, confirm=full_rows),
        "0.0001": run(1e-4, 0.90, 3.50, stopped="diverged: held-out loss 9.1 at step 4"),  # never the best
    }
    summary = reference_summary(runs, 3e-4, (1.20, 3.01), lora_rows)
    assert summary is not None
    assert summary["best_rate"] == 3e-5 and summary["rate_ratio"] == pytest.approx(10.0)
    assert summary["target_loss"]["gap"] == pytest.approx(0.10) and summary["general_loss"]["gap"] == pytest.approx(
        -0.04
    )
    confirm = summary["target_loss"]["confirm"]
    gap, error = paired_difference(lora_rows["target"], full_rows["target"])
    assert (confirm["gap"], confirm["stderr"], confirm["rows"]) == (gap, error, 3) and gap == pytest.approx(2.5 / 30)
    assert set(summary["runs"]["3e-05"]) == {"rate", "target_loss", "general_loss", "stopped"}  # no rows kept
    # Without the pick's confirm rows, the gap is the held-out one alone; with no finished run, no summary.
    assert "confirm" not in reference_summary(runs, 3e-4, (1.2, 3.01))["target_loss"]
    assert reference_summary({"1e-05": run(1e-5, None, None, stopped="out of memory")}, 3e-4, (1.2, 3.0)) is None


def test_a_study_with_a_full_fine_tuning_reference_reports_it_and_resumes_it(
    tiny_model: Path, data_dir: Path, tmp_path
):
    from tests.tuner.test_study import TINY_SPACE, run_study_json, settings
    from tuner.events import Stage

    events: list[object] = []
    run_dir = tmp_path / "run"
    rec = run_study_json(
        settings(tiny_model, 2), run_dir, data_dir=data_dir, space=TINY_SPACE, report=events.append, reference="full"
    )
    reference = rec["reference"]
    assert reference == json.loads((run_dir / "recommendation.json").read_text())["reference"]
    rates = reference_rates(rec["learning_rate"], "math")
    assert sorted(run["rate"] for run in reference["runs"].values()) == list(rates)
    assert reference["best_rate"] in rates and reference["lora_rate"] == rec["learning_rate"]
    assert reference["rate_ratio"] == pytest.approx(rec["learning_rate"] / reference["best_rate"])
    assert reference["target_loss"]["lora"] == rec["objective"]["target_loss"]
    told = [e.message for e in events if isinstance(e, Stage) and e.message.startswith("reference ")]
    assert told[0] == f"reference 1 of {len(rates)}: full fine-tuning at learning rate {rates[0]:.3g}"

    # Run again: every rate is stored, nothing trains twice, the same summary comes back.
    events.clear()
    again = run_study_json(
        settings(tiny_model, 2), run_dir, data_dir=data_dir, space=TINY_SPACE, report=events.append, reference="full"
    )
    assert again["reference"] == reference
    assert not any(isinstance(e, Stage) and e.message.startswith("reference ") for e in events)
