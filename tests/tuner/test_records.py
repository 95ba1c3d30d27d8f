"""Typed records: one JSON round trip each, files written before versions existed still load, newer ones refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tuner.records import RECORD_VERSION, DataSize, Recommendation, RunReport, ScoreRow, StudyScores, TrialRecord
from tuner.settings import DataSettings, LoraSettings, RunSettings, StudySettings, TrainBudget, TrainingRecipe

# Written by the version before typed records (no "version" key), as tuner/study/run.py wrote them then.
OLD_TRIAL = {
    "number": 3,
    "state": "PRUNED",
    "params": {"learning_rate": 0.002, "rank": 8, "alpha_multiple": 2.0, "targets": "mlp"},
    "value": None,
    "reason": "diverged: training loss became nan at step 3",
    "target_loss": None,
    "general_loss": None,
    "forgetting_rise": None,
    "tokens_per_second": 210.5,
    "train_seconds": 4.2,
    "evaluations": [],
    "infeasible": False,
    "measured_peak_bytes": None,
    "scores": {},
    "scoring_seconds": 0,
    "general_score": None,
    "learning_score": None,
    "train_curve": [[1, 2.1], [2, 9.9]],
    "intermediate_values": {},
    "started": "2026-11-28 10:00:00.000001",
    "finished": "2026-11-28 10:00:05.000001",
    "lora": {"rank": 8, "alpha": 16.0, "targets": "mlp", "dropout": 0.0},
}
OLD_RECOMMENDATION = {
    "task": "math",
    "model": "smollm2-135m-instruct",
    "trial": 1,
    "learning_rate": 3e-4,
    "rank": 64,
    "alpha": 128.0,
    "targets": "all",
    "target_modules": "all-linear",
    "epochs": 4,
    "objective": {"goal": 0.5, "value": 1.2, "base_target_loss": 1.6},
    "trials": {"complete": 3, "pruned": 1, "fail": 0},
    "evidence": {"rank": "64 from trial 1."},
    "runtime": "CPU (2 threads, float32)",
    "run_dir": "runs/math",
    "scores": {
        "plan": {"limit": 4, "reason": "4 items per benchmark keep scoring within 20% of a trial"},
        "base": {"hellaswag": 0.5, "winogrande": 0.5, "arc_challenge": 0.25, "gsm8k": 0.0},
        "base_general": 0.4166,
        "base_learning": 0.0,
        "learning_benchmark": "gsm8k",
        "trials": {"1": {"hellaswag": 0.75, "winogrande": 0.5, "arc_challenge": 0.25, "gsm8k": 0.25}},
        "pareto_front": [{"trial": 1, "general": 0.5, "learning": 0.25}],
        "plot": "learning_vs_forgetting.png",
        "points": [{"label": "base", "general": 0.4166, "learning": 0.0, "is_base": True}],
    },
}
OLD_REPORT = {
    "settings": {"task": "math", "model": "m", "learning_rate": 1e-3},
    "runtime": "CPU",
    "out_dir": "runs/train",
    "adapter": "runs/train/adapter",
    "merged": None,
    "training": {"steps": 4, "epochs": 1.0, "epoch_losses": []},
    "scoring": {"tasks": ["gsm8k"], "limit": 2},
    "scores": {
        "base": {"scores": {"gsm8k": 0.0}, "general": None, "learning": 0.0},
        "trained": {"scores": {"gsm8k": 0.5}, "general": None, "learning": 0.5},
    },
    "learning_benchmark": "gsm8k",
    "change": {"general": None, "learning": 0.5},
    "plot": None,
}


@pytest.mark.parametrize(
    ("record_type", "old"),
    [(TrialRecord, OLD_TRIAL), (Recommendation, OLD_RECOMMENDATION), (RunReport, OLD_REPORT)],
)
def test_files_from_before_versions_load_and_write_back_the_same_keys(record_type, old):
    record = record_type.from_json(old)
    written = record.to_json()
    assert written.pop("version") == RECORD_VERSION
    if record_type is Recommendation:  # a point plotted before full fine-tuning was is not full fine-tuning
        points = [{**point, "is_reference": False} for point in old["scores"]["points"]]
        old = {**old, "scores": {**old["scores"], "points": points}}
    assert written == old
    assert record_type.from_json(record.to_json()) == record


def change(score: float, base: float, benchmark: str | None = None) -> dict:
    """A score against a baseline's as tuner.scoring.benchmarks.score_change writes it."""
    figure = {
        "score": score,
        "stderr": 0.05,
        "base": base,
        "base_stderr": 0.05,
        "change": score - base,
        "change_stderr": 0.03,
        "paired": True,
        "within_noise": False,
    }
    return {"benchmark": benchmark, **figure} if benchmark else figure


# As a study with scores, confirm rows and `--reference full` writes recommendation.json today.
SCORED_RECOMMENDATION = {
    **OLD_RECOMMENDATION,
    "version": RECORD_VERSION,
    "objective": {
        "goal": 0.5,
        "base_target_loss": 1.6,
        "base_general_loss": 3.0,
        "base_confirm_target_loss": 1.62,
        "base_confirm_general_loss": 3.01,
        "value": 1.2,
        "target_loss": 1.19,
        "general_loss": 3.02,
        "forgetting_rise": 0.02,
        "confirm_value": 1.21,
        "confirm_rows": 16,
        "confirm_within_noise": True,
    },
    "scores": {
        **OLD_RECOMMENDATION["scores"],
        "points": [
            {"label": "base", "general": 0.4166, "learning": 0.0, "is_base": True, "is_reference": False},
            {"label": "trial 1", "general": 0.5, "learning": 0.25, "is_base": False, "is_reference": False},
            {"label": "full fine-tuning", "general": 0.45, "learning": 0.5, "is_base": False, "is_reference": True},
        ],
        "items": 4,
        "pick": {
            "trial": 1,
            "items": 4,
            "paired": True,
            "general": change(0.5, 0.4166),
            "learning": change(0.25, 0.0, "gsm8k"),
        },
    },
    "data": {"train_examples": 7412, "train_tokens": 900000, "tokens_per_second": None},
    "reference": {
        "method": "full",
        "runs": {"3e-05": {"rate": 3e-5, "target_loss": 1.1, "general_loss": 3.05, "stopped": None}},
        "best_rate": 3e-5,
        "lora_rate": 3e-4,
        "rate_ratio": 10.0,
        "target_loss": {
            "lora": 1.19,
            "full": 1.1,
            "gap": 0.09,
            "confirm": {"lora": 1.2, "full": 1.12, "gap": 0.08, "stderr": 0.01, "rows": 16},
        },
        "general_loss": {"lora": None, "full": 3.05},
        "score_items": 4,
        "general_score": {
            "full": change(0.45, 0.4166),
            "lora": 0.5,
            "lora_stderr": 0.05,
            "gap": 0.05,
            "stderr": 0.04,
            "paired": True,
            "within_noise": True,
        },
        "learning_score": {
            "benchmark": "gsm8k",
            "full": change(0.5, 0.0),
            "lora": 0.25,
            "lora_stderr": 0.05,
            "gap": -0.25,
            "stderr": 0.06,
            "paired": True,
            "within_noise": False,
        },
    },
}


def test_a_scored_recommendation_reads_as_types_and_writes_back_the_same_file():
    recommendation = Recommendation.from_json(SCORED_RECOMMENDATION)
    assert recommendation.to_json() == SCORED_RECOMMENDATION
    assert recommendation.objective.confirm_rows == 16 and recommendation.data == DataSize(7412, 900000, None)
    pick = recommendation.scores.pick if recommendation.scores is not None else None
    assert pick is not None and pick.learning is not None and pick.learning.benchmark == "gsm8k"
    assert pick.general is not None and pick.general.benchmark is None and pick.general.change == 0.5 - 0.4166
    reference = recommendation.reference
    assert reference is not None and reference.runs["3e-05"].target_loss == 1.1
    assert reference.target_loss.confirm is not None and reference.general_loss.gap is None
    assert reference.learning_score is not None and reference.learning_score.full.score == 0.5
    assert "gsm8k 0.250 (base 0.000)" in recommendation.headline()
    assert Recommendation.from_json(recommendation.to_json()) == recommendation


def test_typed_fields_read_back_as_types():
    recommendation = Recommendation.from_json(OLD_RECOMMENDATION)
    assert isinstance(recommendation.scores, StudyScores) and recommendation.scores.learning_benchmark == "gsm8k"
    report = RunReport.from_json(OLD_REPORT)
    assert report.scores is not None and report.scores["trained"] == ScoreRow({"gsm8k": 0.5}, None, 0.5)
    assert TrialRecord.from_json(OLD_TRIAL).diverged()


def test_an_unscored_run_and_a_study_without_scores_leave_the_score_keys_out():
    unscored = {key: OLD_REPORT[key] for key in ("settings", "runtime", "out_dir", "adapter", "merged", "training")}
    report = RunReport.from_json({**unscored, "scoring": None})
    assert "scores" not in report.to_json() and "change" not in report.to_json()
    assert StudyScores(plan={"limit": 0, "reason": "off"}).to_json() == {"plan": {"limit": 0, "reason": "off"}}


def test_a_newer_version_is_refused_with_what_this_advisor_reads():
    with pytest.raises(ValueError, match=f"version 99 is newer than this advisor reads \\({RECORD_VERSION}\\)"):
        Recommendation.from_json({**OLD_RECOMMENDATION, "version": 99})


def test_settings_files_keep_their_flat_shape():
    budget = TrainBudget(train_tokens=4096, batch_size=2, seq_len=128)
    study = StudySettings(model="m", data=DataSettings("custom", "mine.csv", "q", "a", seed=3), trials=4, budget=budget)
    stored = study.to_json()
    assert (stored["task"], stored["data"], stored["prompt_column"], stored["seed"]) == ("custom", "mine.csv", "q", 3)
    assert StudySettings.from_json({**stored, "storage": "study.db"}) == study
    recipe = TrainingRecipe(LoraSettings(8, 16, "all"), 1e-3)
    run = RunSettings(model="m", data=DataSettings("math"), recipe=recipe, train_examples=20)
    assert set(run.identity()) == {
        "task", "model", "lora", "learning_rate", "epochs", "batch_size", "seq_len", "warmup_ratio",
        "max_grad_norm", "seed", "data", "prompt_column", "response_column", "train_examples",
    }  # fmt: skip


def test_a_variant_round_trips_and_files_from_before_variants_read_as_plain_lora():
    assert Recommendation.from_json(OLD_RECOMMENDATION).variant == "lora"
    dora = Recommendation.from_json({**OLD_RECOMMENDATION, "variant": "dora"})
    assert dora.variant == "dora" and dora.to_json()["variant"] == "dora"
    assert Recommendation.from_json(dora.to_json()) == dora


def test_a_run_identity_names_its_variant_unless_plain_lora():
    recipe = TrainingRecipe(LoraSettings(8, 16, "all"), 1e-3)
    run = RunSettings(model="m", data=DataSettings("math"), recipe=recipe)
    # What train_settings.json held before variants existed: runs started then still resume.
    assert run.identity()["lora"] == {"rank": 8, "alpha": 16, "targets": "all", "dropout": 0.0}
    pissa = replace(run, recipe=replace(recipe, lora=replace(recipe.lora, variant="pissa")))
    assert pissa.identity()["lora"] == {"rank": 8, "alpha": 16, "targets": "all", "dropout": 0.0, "variant": "pissa"}
