"""Full fine-tuning as a study's reference arm: its rates, its summary beside the pick, and a tiny-model study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.scoring.benchmarks import difference_stderr, forgetting_stderr, paired_stderr
from tuner.study.confirm import paired_difference
from tuner.study.reference import ReferenceScores, current_scores, rate_key, reference_rates, reference_summary


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
    assert summary.best_rate == 3e-5 and summary.rate_ratio == pytest.approx(10.0)
    assert summary.target_loss.gap == pytest.approx(0.10) and summary.general_loss.gap == pytest.approx(-0.04)
    confirm = summary.target_loss.confirm
    assert confirm is not None
    gap, error = paired_difference(lora_rows["target"], full_rows["target"])
    assert (confirm.gap, confirm.stderr, confirm.rows) == (gap, error, 3) and gap == pytest.approx(2.5 / 30)
    assert set(summary.to_json()["runs"]["3e-05"]) == {"rate", "target_loss", "general_loss", "stopped"}  # no rows kept
    # Without the pick's confirm rows, the gap is the held-out one alone; with no finished run, no summary.
    assert reference_summary(runs, 3e-4, (1.2, 3.01)).target_loss.confirm is None  # type: ignore[union-attr]
    assert reference_summary({"1e-05": run(1e-5, None, None, stopped="out of memory")}, 3e-4, (1.2, 3.0)) is None


def scored(items: dict[str, list[float]], keep_items: bool = True) -> dict[str, dict]:
    """Each benchmark's score as TaskScore.as_dict keeps it, from its 0/1 item scores."""
    return {
        name: {
            "score": sum(values) / len(values),
            "stderr": 0.1,
            "items": len(values),
            "item_scores": {str(i): value for i, value in enumerate(values)} if keep_items else None,
        }
        for name, values in items.items()
    }


# Four items per benchmark: the base model, full fine-tuning's best run and LoRA's pick on the same items.
BASE = {"hellaswag": [1, 0, 0, 1], "winogrande": [1, 1, 0, 0], "arc_challenge": [0, 0, 1, 0], "gsm8k": [0, 0, 0, 0]}
FULL = {"hellaswag": [1, 0, 0, 0], "winogrande": [0, 1, 0, 0], "arc_challenge": [0, 0, 1, 0], "gsm8k": [1, 1, 0, 1]}
LORA = {"hellaswag": [1, 0, 0, 1], "winogrande": [1, 1, 0, 0], "arc_challenge": [0, 0, 1, 0], "gsm8k": [1, 0, 0, 0]}


def test_the_summary_gives_full_fine_tunings_scores_and_the_score_gaps_paired_over_the_items():
    runs = {"3e-05": run(3e-5, 1.10, 3.05), "1e-05": run(1e-5, 1.30, 3.00)}
    scores = ReferenceScores(3e-5, 4, scored(FULL), scored(LORA), scored(BASE), "gsm8k")
    summary = reference_summary(runs, 3e-4, (1.20, 3.01), scores=scores)
    assert summary is not None and summary.score_items == 4

    learning = summary.learning_score
    assert learning is not None
    assert learning.benchmark == "gsm8k"
    # Full fine-tuning learned 3 of 4 against the base model's none: +0.75, its error from the item differences.
    full = learning.full
    assert (full.score, full.base, full.change) == (0.75, 0.0, 0.75) and full.paired
    # Differences 1, 1, 0, 1: variance ((3 x 0.25^2 + 0.75^2) / 3) = 0.25, standard error sqrt(0.25 / 4) = 0.25.
    assert full.change_stderr == pytest.approx(0.25) and not full.within_noise  # 0.75 > 2 x 0.25
    # LoRA - full on the same items: differences 0, -1, 0, -1, mean -0.5, paired error sqrt(1/3 / 4).
    assert learning.lora == 0.25 and learning.gap == -0.5 and learning.paired
    assert learning.stderr == pytest.approx((1 / 3 / 4) ** 0.5) and learning.within_noise

    general = summary.general_score
    assert general is not None
    # Full fine-tuning lost one HellaSwag and one WinoGrande item: the general mean falls by (1/4 + 1/4) / 3.
    assert general.full.change == pytest.approx(-1 / 6) and general.gap == pytest.approx(1 / 6)
    # LoRA - full item by item: HellaSwag 0, 0, 0, 1 and WinoGrande 1, 0, 0, 0 (each a paired error of 0.25),
    # ARC-Challenge all 0; the mean of three independent benchmarks: sqrt(0.25^2 + 0.25^2) / 3.
    per_benchmark = {
        name: paired_stderr(scored(LORA)[name]["item_scores"], scored(FULL)[name]["item_scores"])
        for name in ("hellaswag", "winogrande", "arc_challenge")
    }
    assert per_benchmark == pytest.approx({"hellaswag": 0.25, "winogrande": 0.25, "arc_challenge": 0.0})
    assert general.stderr == pytest.approx(0.125**0.5 / 3) and general.paired
    assert general.within_noise  # 1/6 <= 2 x 0.118
    assert general.lora_stderr == pytest.approx(forgetting_stderr({n: 0.1 for n in per_benchmark}))

    # Without item scores the errors are taken as independent; scores of a run that is not the best count not.
    unpaired = reference_summary(
        runs, 3e-4, (1.2, 3.01), scores=ReferenceScores(3e-5, 4, scored(FULL, False), scored(LORA), scored(BASE), None)
    )
    assert unpaired is not None and unpaired.learning_score is None
    assert unpaired.general_score is not None and not unpaired.general_score.paired
    independent = difference_stderr(*[forgetting_stderr({n: 0.1 for n in per_benchmark})] * 2)
    assert unpaired.general_score.stderr == pytest.approx(independent)
    stale = ReferenceScores(1e-5, 4, scored(FULL), scored(LORA), scored(BASE), "gsm8k")
    assert reference_summary(runs, 3e-4, (1.2, 3.01), scores=stale).general_score is None  # type: ignore[union-attr]


def test_stored_scores_count_while_they_belong_to_the_best_run_on_the_picks_items():
    runs = {"3e-05": run(3e-5, 1.10, 3.05), "1e-05": run(1e-5, 1.30, 3.00)}
    stored = {"rate": 3e-5, "items": 10, "seconds": 4.0, "scores": scored(FULL)}
    assert current_scores(runs, stored, 10) == stored
    assert current_scores(runs, stored, 20) is None  # the pick was scored on other items
    assert current_scores({**runs, "1e-04": run(1e-4, 1.0, 3.1)}, stored, 10) is None  # a better run since
    assert current_scores(runs, None, 10) is None and current_scores(runs, stored, None) is None


def test_a_study_with_a_full_fine_tuning_reference_reports_it_and_resumes_it(
    tiny_model: Path, data_dir: Path, tmp_path
):
    from tests.tuner.study.test_study import TINY_SPACE, run_study_json, settings
    from tuner.events import Stage
    from tuner.study.state import StudyState, default_storage, open_storage, stored_study

    events: list[object] = []
    run_dir = tmp_path / "run"
    options = {"data_dir": data_dir, "space": TINY_SPACE, "report": events.append, "reference": "full"}
    rec = run_study_json(settings(tiny_model, 2), run_dir, **options)
    reference = rec["reference"]
    assert reference == json.loads((run_dir / "recommendation.json").read_text())["reference"]
    rates = reference_rates(rec["learning_rate"], "math")
    assert sorted(run["rate"] for run in reference["runs"].values()) == list(rates)
    assert reference["best_rate"] in rates and reference["lora_rate"] == rec["learning_rate"]
    assert reference["rate_ratio"] == pytest.approx(rec["learning_rate"] / reference["best_rate"])
    assert reference["target_loss"]["lora"] == rec["objective"]["target_loss"]
    told = [e.message for e in events if isinstance(e, Stage)]
    assert next(m for m in told if m.startswith("reference ")) == (
        f"reference 1 of {len(rates)}: full fine-tuning at learning rate {rates[0]:.3g}"
    )

    # The pick was scored after the search: the best full run was scored on the same items, once, without training
    # it again (its weights were kept from its run), and sits beside the pick and the base model.
    pick = rec["scores"]["pick"]
    assert reference["score_items"] == pick["items"] == rec["scores"]["items"]
    assert sum("scoring full fine-tuning's best run" in m for m in told) == 1 and not any("again" in m for m in told)
    for name in ("general_score", "learning_score"):
        figure = reference[name]
        assert figure["full"]["base"] == pick[name.removesuffix("_score")]["base"]
        assert figure["lora"] == pick[name.removesuffix("_score")]["score"]
        assert figure["gap"] == pytest.approx(figure["lora"] - figure["full"]["score"])
        assert figure["paired"] and figure["full"]["paired"] and figure["stderr"] is not None
        assert figure["within_noise"] == (abs(figure["gap"]) <= 2 * figure["stderr"])
    assert reference["learning_score"]["benchmark"] == "gsm8k"
    study = stored_study(run_dir, "advisor", open_storage(default_storage(run_dir)))
    stored = StudyState(study).reference_scores
    assert stored["rate"] == reference["best_rate"] and stored["items"] == pick["items"]
    full_point = [point for point in rec["scores"]["points"] if point["is_reference"]]
    assert full_point == [
        {
            "label": "full fine-tuning",
            "general": reference["general_score"]["full"]["score"],
            "learning": reference["learning_score"]["full"]["score"],
            "is_base": False,
            "is_reference": True,
        }
    ]

    # Run again: every rate and the scores are stored, nothing trains or is scored twice, the same summary comes back.
    events.clear()
    again = run_study_json(settings(tiny_model, 2), run_dir, **options)
    assert again["reference"] == reference and again["scores"]["points"] == rec["scores"]["points"]
    told = [e.message for e in events if isinstance(e, Stage)]
    assert not any(m.startswith("reference ") or "full fine-tuning" in m for m in told)

    # A study stopped before the best run was scored: its weights are gone, so that run alone trains again.
    StudyState(study).reference_scores = None
    events.clear()
    rescored = run_study_json(settings(tiny_model, 2), run_dir, **options)
    told = [e.message for e in events if isinstance(e, Stage)]
    assert not any(m.startswith("reference ") for m in told)
    assert [m for m in told if "again" in m] == [
        f"full fine-tuning at learning rate {reference['best_rate']:.3g} again, to score its weights"
    ]
    assert rescored["reference"]["runs"] == reference["runs"] and rescored["reference"]["score_items"] == pick["items"]
    assert set(rescored["reference"]) == set(reference)


def test_a_reference_beside_an_unscored_pick_is_not_scored_either(tiny_model: Path, data_dir: Path, tmp_path):
    from tests.tuner.study.test_study import TINY_SPACE, run_study_json, settings
    from tuner.events import Stage

    events: list[object] = []
    options = {"data_dir": data_dir, "space": TINY_SPACE, "score_items": 0, "reference": "full"}
    rec = run_study_json(settings(tiny_model, 2), tmp_path / "run", report=events.append, **options)
    assert rec["reference"]["best_rate"] and "score_items" not in rec["reference"]
    told = [e.message for e in events if isinstance(e, Stage)]
    assert sum(m.startswith("reference ") for m in told) == len(rec["reference"]["runs"])
    assert not any("scoring full fine-tuning" in m or "again" in m for m in told)
