"""Whole studies on the tiny model: end to end, resumed, diverging, and refusing mismatched settings."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.conftest import tune_command
from tuner.errors import AdvisorError
from tuner.events import StudyFinished, TrialFinished, TrialStarted
from tuner.settings import DataSettings, StudySettings, TrainBudget
from tuner.study.options import StudyOptions
from tuner.study.priors import width_rate
from tuner.study.run import run_study
from tuner.study.space import SearchSpace


def run_study_json(settings: StudySettings, run_dir: Path, **options) -> dict:
    """run_study's recommendation with these StudyOptions, as recommendation.json holds it."""
    return run_study(settings, run_dir, StudyOptions(**options)).to_json()


BUDGET = TrainBudget(train_tokens=4096, batch_size=2, seq_len=128, evaluations=2)
TINY_SPACE = SearchSpace(lr_low=1e-2, lr_high=2e-1)  # a random model needs high rates to move


def settings(model: Path, trials: int, **kwargs) -> StudySettings:
    return StudySettings(model=str(model), data=DataSettings("math"), trials=trials, budget=BUDGET, **kwargs)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run_dir / "trials").glob("trial_*.json"))]


def test_three_trial_study_writes_trials_and_recommendation(tiny_model, data_dir, tmp_path):
    events = []
    run_dir = tmp_path / "run"
    rec = run_study_json(settings(tiny_model, 3), run_dir, data_dir=data_dir, space=TINY_SPACE, report=events.append)
    written = json.loads((run_dir / "recommendation.json").read_text())
    assert written["learning_rate"] == rec["learning_rate"] and written["rank"] == rec["rank"]
    for key in ("learning_rate", "rank", "alpha", "target_modules", "objective", "evidence"):
        assert key in written
    assert set(written["evidence"]) >= {"learning_rate", "rank", "alpha", "target_modules"}
    trials = records(run_dir)
    assert [t["number"] for t in trials] == [0, 1, 2]
    hidden_size = json.loads((tiny_model / "config.json").read_text())["hidden_size"]
    guess_rate = float(f"{width_rate(hidden_size, 'llama'):.3g}")  # the width rule's rate starts the study
    assert trials[0]["params"] == {"learning_rate": guess_rate, "rank": 16, "alpha": 32.0, "targets": "all"}
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert complete and all(len(t["train_curve"]) == 16 and len(t["evaluations"]) == 2 for t in complete)
    # Each trial was among the best three when it completed: all were re-measured on the confirm rows (half the
    # 32 rows a trial trains on), and the recommendation is the best there.
    assert BUDGET.confirm_set_rows() == 16
    assert all(len(t["confirm"]["target"]) == 16 and len(t["confirm"]["general"]) == 16 for t in complete)
    picked = next(t for t in complete if t["number"] == written["trial"])
    assert written["objective"]["value"] == picked["value"] and written["objective"]["confirm_rows"] == 16
    assert "were re-measured on 16 held-out rows" in written["evidence"]["choice"]
    assert sum(isinstance(e, TrialStarted) for e in events) == 3
    assert sum(isinstance(e, TrialFinished) for e in events) == 3 and isinstance(events[-1], StudyFinished)

    # The same study with more trials resumes: the first three stay as they were, none is repeated.
    run_study(settings(tiny_model, 5), run_dir, StudyOptions(data_dir=data_dir, space=TINY_SPACE))
    resumed = records(run_dir)
    assert len(resumed) == 5 and resumed[:3] == trials
    assert len({json.dumps(t["params"], sort_keys=True) for t in resumed}) == 5

    with pytest.raises(AdvisorError, match="holds a study with other settings \\(goal differ\\)"):
        run_study(settings(tiny_model, 5, goal=0.9), run_dir, StudyOptions(data_dir=data_dir))


def test_diverging_trial_is_pruned_with_its_reason(tiny_model, data_dir, tmp_path):
    too_high = {"learning_rate": 80.0, "rank": 16, "alpha_multiple": 2.0, "targets": "all"}
    rec = run_study_json(
        settings(tiny_model, 2),
        tmp_path / "run",
        data_dir=data_dir,
        space=SearchSpace(lr_low=50, lr_high=100).including(too_high),
        first_configurations=[too_high],
        range_test=None,
    )
    diverged = records(tmp_path / "run")[0]
    assert diverged["state"] == "PRUNED" and diverged["reason"].startswith("diverged:")
    assert rec["trials"]["pruned"] >= 1
    assert "diverged" in rec["evidence"]["learning_rate"]


def running_trials(database: Path, after: int) -> int:
    """Trials numbered above `after` that the study's SQLite file holds as running (0 while it is locked)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1)) as connection:
            query = "SELECT COUNT(*) FROM trials WHERE state = 'RUNNING' AND number > ?"
            return connection.execute(query, (after,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_study_resumes_keeping_every_completed_trial(tiny_model, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    options = ["--trials", "4", "--trial-tokens", "65536", "--batch-size", "4", "--seq-len", "128", "--json"]
    command = tune_command(tiny_model, data_dir, run_dir, *options)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while not (run_dir / "trials" / "trial_0000.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the study never finished a trial"
        time.sleep(0.05)
    while not running_trials(run_dir / "study.db", after=0):  # killed inside the next trial, not between two
        assert process.poll() is None and time.monotonic() < deadline, "the study never started a second trial"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = records(run_dir)
    assert before and len(before) < 4

    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    written = records(run_dir)
    after = [t for t in written if t["state"] != "FAIL"]
    assert len(after) == 4 and after[: len(before)] == before
    assert len({json.dumps(t["params"], sort_keys=True) for t in after}) == 4
    counts = json.loads(done.stdout)["trials"]
    assert counts["complete"] + counts["pruned"] == 4
    # The trial the kill interrupted has its record and reason, counted as failed, and ran again in its slot.
    failed = [t for t in written if t["state"] == "FAIL"]
    assert len(failed) == counts["fail"] == 1 and failed[0]["reason"].startswith("interrupted")
    assert failed[0]["slot"] in {t["slot"] for t in after}


def test_storage_url_keeps_the_study_outside_the_run_directory(tiny_model, data_dir, tmp_path):
    import optuna

    from tuner.study.state import study_name

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    run_dir = tmp_path / "run"
    run_study(settings(tiny_model, 1), run_dir, StudyOptions(data_dir=data_dir, storage=url))
    assert not (run_dir / "study.db").exists() and (run_dir / "recommendation.json").is_file()
    study = optuna.load_study(study_name=study_name(run_dir, external_storage=True), storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "WAITING"]  # the second paper setting waits
    assert study.trials[0].params["rank"] == 16


def test_surviving_trials_are_scored_and_the_study_ends_with_a_pareto_front(tiny_model, data_dir, tmp_path):
    from tuner.events import Stage, TrialScored

    events = []
    run_dir = tmp_path / "run"
    options = {"data_dir": data_dir, "space": TINY_SPACE, "score_items": 4}
    rec = run_study_json(settings(tiny_model, 3), run_dir, report=events.append, **options)
    scored = [t for t in records(run_dir) if t["scores"]]
    assert scored and all(t["state"] == "COMPLETE" for t in scored)
    for trial in scored:
        assert set(trial["scores"]) == {"hellaswag", "winogrande", "arc_challenge", "gsm8k"}
        assert all(0.0 <= value <= 1.0 for value in trial["scores"].values())
        mean = sum(trial["scores"][n] for n in ("hellaswag", "winogrande", "arc_challenge")) / 3
        assert trial["general_score"] == pytest.approx(mean) and trial["learning_score"] == trial["scores"]["gsm8k"]
    assert sum(isinstance(e, TrialScored) for e in events) == len(scored)
    scores = rec["scores"]
    assert scores["plan"]["limit"] == 4 and scores["learning_benchmark"] == "gsm8k"
    assert set(scores["base"]) == {"hellaswag", "winogrande", "arc_challenge", "gsm8k"}
    front = {p["trial"] for p in scores["pareto_front"]}
    assert front and front <= {t["number"] for t in scored}
    assert (run_dir / scores["plot"]).read_bytes()[:4] == b"\x89PNG"

    # Resumed, the base model is not scored again: its scores live in the study (and the cache).
    events.clear()
    run_study(settings(tiny_model, 4), run_dir, StudyOptions(report=events.append, **options))
    assert not any(isinstance(e, Stage) and "base model on the study" in e.message for e in events)


def test_short_trials_leave_scoring_to_the_pick_which_is_scored_after_the_search_with_error_bars(
    tiny_model, data_dir, tmp_path
):
    from tuner.events import Stage, TrialScored
    from tuner.scoring.benchmarks import MIN_PICK_ITEMS, forgetting_stderr, items_within_share

    events = []
    run_dir = tmp_path / "run"
    rec = run_study_json(settings(tiny_model, 3), run_dir, data_dir=data_dir, space=TINY_SPACE, report=events.append)
    plan = rec["scores"]["plan"]
    # Priced from the trial's measured speed, nothing timed: a few-second trial cannot score 10 items in 20 %.
    assert set(plan["seconds_per_item"]) == {"hellaswag", "winogrande", "arc_challenge", "gsm8k"}
    assert items_within_share(plan["train_seconds"], plan["seconds_per_item"]) < 10
    assert plan["mode"] == "pick" and "the pick is scored after the search" in plan["reason"]
    assert not any(t["scores"] for t in records(run_dir))  # no trial scored on its own
    assert not any(isinstance(e, Stage) and "cost per item" in e.message for e in events)

    scores = rec["scores"]
    pick = scores["pick"]
    assert pick["trial"] == rec["trial"] and pick["items"] == MIN_PICK_ITEMS == scores["items"]
    assert set(scores["trials"]) == {str(rec["trial"])} and set(scores["base"]) == set(plan["seconds_per_item"])
    # The pick and the base model answered the same items: the changes are tested on the paired items.
    paired = scores["paired_stderr"][str(rec["trial"])]
    assert pick["paired"] and set(paired) == set(plan["seconds_per_item"])
    for figure in (pick["general"], pick["learning"]):
        assert 0 <= figure["score"] <= 1 and figure["stderr"] >= 0 and figure["base_stderr"] >= 0
        assert figure["change"] == pytest.approx(figure["score"] - figure["base"]) and figure["paired"]
    assert pick["general"]["change_stderr"] == pytest.approx(forgetting_stderr(paired))
    assert pick["learning"]["change_stderr"] == pytest.approx(paired["gsm8k"])
    assert pick["learning"]["benchmark"] == "gsm8k"
    assert [e.number for e in events if isinstance(e, TrialScored)] == [rec["trial"]]
    told = [e.message for e in events if isinstance(e, Stage) and "scoring the pick" in e.message]
    assert told and f"on {MIN_PICK_ITEMS} items per benchmark (about" in told[0]
    # Only the best three completed trials' adapters were kept for it, in PEFT's format.
    kept = sorted(p.name for p in (run_dir / "finalists").iterdir())
    assert f"trial_{rec['trial']:04d}" in kept and len(kept) <= 3
    assert (run_dir / "finalists" / kept[0] / "adapter_config.json").is_file()

    # Run again: the pick keeps its scores, nothing is scored twice.
    events.clear()
    again = run_study_json(settings(tiny_model, 3), run_dir, data_dir=data_dir, space=TINY_SPACE, report=events.append)
    assert again["scores"]["pick"] == pick and not any(isinstance(e, TrialScored) for e in events)


def test_a_trial_out_of_memory_is_recorded_infeasible_and_the_study_goes_on(
    tiny_model, data_dir, tmp_path, monkeypatch
):
    import torch

    import tuner.training.trial

    real_run_trial = tuner.training.trial.run_trial

    def run_trial(model, data, lora, *args, **kwargs):
        if lora.rank == 256:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run_trial(model, data, lora, *args, **kwargs)

    monkeypatch.setattr(tuner.training.trial, "run_trial", run_trial)
    rec = run_study_json(settings(tiny_model, 3), tmp_path / "run", data_dir=data_dir, space=TINY_SPACE, score_items=0)
    trials = records(tmp_path / "run")
    assert trials[1]["state"] == "FAIL" and trials[1]["infeasible"]
    assert trials[1]["reason"].startswith("out of memory: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert len(trials) == 3 and trials[2]["state"] in ("COMPLETE", "PRUNED")
    assert rec["trials"]["fail"] == 1


def test_a_budgeted_study_starts_many_short_trials_and_spends_no_more_than_its_budget(tiny_model, data_dir, tmp_path):
    from tuner.study.budget import StudyBudget
    from tuner.study.range_test import RangeTestPlan

    events = []
    budget = StudyBudget(tokens=3 * BUDGET.train_tokens)  # three whole trials' tokens
    run_dir = tmp_path / "run"
    rec = run_study_json(
        settings(tiny_model, 1000, search_budget=budget),
        run_dir,
        data_dir=data_dir,
        space=TINY_SPACE,
        report=events.append,
        score_items=0,
        range_test=RangeTestPlan(start=1e-4, end=0.9, steps=12),
    )
    found = json.loads((run_dir / "range_test.json").read_text())
    assert found["curve"] and found["tokens"] == len(found["curve"]) * 128
    trials = records(run_dir)
    spent = sum(len(t["train_curve"]) for t in trials) * BUDGET.tokens_per_step() + found["tokens"]
    assert spent <= budget.tokens
    whole = (budget.tokens - found["tokens"]) // BUDGET.train_tokens
    assert len(trials) > whole  # more trials than whole trials would fit: the pruned ones cost a rung
    assert any(len(t["train_curve"]) == 8 and t["state"] == "PRUNED" for t in trials)  # stopped at the first rung
    assert rec["trials"]["complete"] >= 1
    search = rec["evidence"]["search"]
    assert "Starting point 1: the single educated guess" in search and "range test" in search
    assert f"of {budget.tokens:,} training tokens used" in search
    finished = [e for e in events if isinstance(e, TrialFinished)]
    assert all(e.spent and "training tokens used" in e.spent for e in finished)
    assert finished[-1].spent_share == pytest.approx(spent / budget.tokens, abs=1e-9)

    # Run again with the same budget: nothing is left to spend, so nothing more is trained.
    again = run_study_json(settings(tiny_model, 1000, search_budget=budget), run_dir, data_dir=data_dir)
    assert records(run_dir) == trials and again["trial"] == rec["trial"]


def test_each_searched_variant_gets_its_own_range_test_and_draws_from_its_range(tiny_model, data_dir, tmp_path):
    from tuner.study.range_test import RangeTestPlan

    run_dir = tmp_path / "run"
    plan = RangeTestPlan(start=1e-4, end=0.9, steps=6, min_improvement=0.0)
    rec = run_study_json(
        settings(tiny_model, 4),
        run_dir,
        data_dir=data_dir,
        space=SearchSpace(lr_low=1e-2, lr_high=2e-1, variants=("lora", "loraplus")),
        score_items=0,
        range_test=plan,
    )
    first = json.loads((run_dir / "range_test.json").read_text())
    plus = json.loads((run_dir / "range_test_loraplus.json").read_text())
    assert first["adapter"]["variant"] == "lora" and plus["adapter"]["variant"] == "loraplus"
    assert "Rates of LoRA+:" in rec["evidence"]["search"]
    written = records(run_dir)
    for trial in written[2:]:  # past the two starting points, the draws follow each variant's range
        variant = trial["params"]["variant"]
        found = plus if variant == "loraplus" else first
        # The range, widened only to hold that variant's starting points (LoRA's guess at the width rule's rate).
        held = [t["params"]["learning_rate"] for t in written[:2] if t["params"]["variant"] == variant]
        if found["conclusive"]:
            assert min([found["low"], *held]) <= trial["params"]["learning_rate"] <= max([found["high"], *held])


def test_the_range_test_takes_at_most_a_quarter_of_a_token_budget(tiny_model, data_dir, tmp_path):
    from tuner.study.budget import StudyBudget
    from tuner.study.range_test import RangeTestPlan
    from tuner.study.search import range_test_within_budget

    budget = StudyBudget(tokens=3 * BUDGET.train_tokens)  # 12,288 tokens: a quarter holds 24 steps of one 128-token row
    study = settings(tiny_model, 1000, search_budget=budget)
    plan = RangeTestPlan(start=1e-4, end=0.9)  # 40 steps: 5,120 tokens, 42 % of the budget
    assert range_test_within_budget(plan, study, 1).steps == 24
    assert range_test_within_budget(plan, study, 3).steps == 8  # split among three variants' tests
    assert range_test_within_budget(plan, study, 4) is None  # under 8 steps each: the space's own rates
    assert range_test_within_budget(plan, settings(tiny_model, 4), 1) is plan  # no budget: as it is
    run_dir = tmp_path / "run"
    run_study(study, run_dir, StudyOptions(data_dir=data_dir, space=TINY_SPACE, score_items=0, range_test=plan))
    found = json.loads((run_dir / "range_test.json").read_text())
    assert found["tokens"] <= budget.tokens // 4 and len(found["curve"]) <= 24
