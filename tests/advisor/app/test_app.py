"""The Textual session driven by a Pilot against a fake tuner: every step, the live study, stop and resume."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from textual.widgets import DataTable, Input, RichLog, Static

from advisor.app.app import AdvisorApp
from advisor.app.screens.export import ExportScreen
from advisor.app.screens.goal import GoalScreen
from advisor.app.screens.memory import MemoryScreen
from advisor.app.screens.model import ModelScreen
from advisor.app.screens.recommendation import RecommendationScreen
from advisor.app.screens.study import StudyEnded, StudyEvent, StudyScreen
from advisor.app.screens.task import TaskScreen
from advisor.app.screens.train import TrainScreen
from tuner import events
from tuner.defaults import MAX_BUDGET_TRIALS
from tuner.records import DataSize, Recommendation, RunReport

PARAMS = {"learning_rate": 1e-4, "rank": 16, "alpha_multiple": 2.0, "targets": "all"}


def recommendation(run_dir: Path) -> dict[str, Any]:
    return {
        "task": "math",
        "model": "tiny",
        "learning_rate": 1e-4,
        "rank": 16,
        "alpha": 32.0,
        "targets": "all",
        "epochs": 4,
        "evidence": {"learning_rate": "1e-4 from trial 0."},
        "run_dir": str(run_dir),
        "trial": None,
        "target_modules": "all-linear",
        "objective": {},
        "trials": {"complete": 1, "pruned": 0, "fail": 0},
    }


class FakeTuner:
    """Reports a study's events like the real engine, in milliseconds; `step_pause` slows each step."""

    def __init__(self, step_pause: float = 0.0, hold: threading.Event | None = None) -> None:
        self.step_pause = step_pause
        self.hold = hold
        """Set: the first step waits until it is set (then cleared), so a test can act mid-trial."""
        self.calls: list[Path] = []
        self.allowed: list[bool] = []
        self.first_step = threading.Event()

    def __call__(self, settings: Any, run_dir: Path, report: Any, allow_code_execution: bool = False) -> dict[str, Any]:
        self.calls.append(run_dir)
        self.allowed.append(allow_code_execution)
        spend = settings.search_budget
        count = settings.trials  # a token budget runs its full trials' worth, a time budget three
        if spend is not None:
            count = spend.tokens // settings.budget.train_tokens if spend.tokens else 3
        share = (lambda done: done / count) if spend is not None else (lambda done: None)
        report(events.StudyStarted(settings.trials, 0, str(run_dir), spent_share=share(0)))
        for number in range(count):
            report(events.TrialStarted(number, number + 1, 0 if spend else count, 4, PARAMS))
            for step in range(1, 5):
                self.first_step.set()
                if self.hold is not None and not self.hold.is_set():
                    self.hold.wait(10)
                time.sleep(self.step_pause)
                report(events.TrialProgress(number, step, 4, 2.0 - 0.1 * step, 200.0))
            report(events.TrialEvaluated(number, 4, 1.5 - 0.1 * number, 2.0, 1.6))
            scores = {"hellaswag": 0.4, "winogrande": 0.5, "arc_challenge": 0.3, "gsm8k": 0.1 * number}
            report(events.TrialScored(number, scores, 0.4, 0.1 * number))
            report(events.TrialFinished(number, "COMPLETE", 1.6, None, 1.0, spent_share=share(number + 1)))
        rec = Recommendation.from_json(recommendation(run_dir))
        report(events.StudyFinished(rec, []))
        return rec


def log_text(screen: Any) -> str:
    """The full run's log as one text (its lines wrap: joined with spaces, as they were written)."""
    return " ".join(strip.text.strip() for strip in screen.query_one("#log", RichLog).lines)


async def settle(app: AdvisorApp, pilot: Any) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_whole_flow_from_first_question_to_recommendation(tiny_model: Path, tmp_path: Path, size):
    tuner = FakeTuner()
    app = AdvisorApp(runner=tuner, runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model))
    async with app.run_test(size=size) as pilot:
        assert isinstance(app.screen, TaskScreen)
        assert "at least 4 epochs" in str(app.screen.query_one("#advice", Static).render())
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        assert "parameters" in str(app.screen.query_one("#model-info", Static).render())
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, MemoryScreen)
        await pilot.press(*"8GiB")  # the step's input has the focus: typing answers at once
        await settle(app, pilot)
        assert app.screen.query_one("#budget", Input).value == "8GiB"
        assert "fits in 8.00 GiB" in str(app.screen.query_one("#estimate", Static).render())
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, GoalScreen)
        assert "10 min of trials" in str(app.screen.query_one("#duration", Static).render())
        app.screen.query_one("#study-budget", Input).value = "50k"  # three full trials of 16,384 tokens
        await pilot.pause()
        assert "50,000 training tokens" in str(app.screen.query_one("#duration", Static).render())
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, StudyScreen)
        table = app.screen.query_one("#trials", DataTable)
        assert table.row_count == 3
        assert [table.get_cell(str(n), "state") for n in range(3)] == ["complete"] * 3
        assert [str(key.value) for key in table.columns][:3] == ["#", "state", "loss"]  # the figures first
        assert "study finished" in str(app.screen.query_one("#status", Static).render())
        assert tuner.calls == [tmp_path / "math"]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)
        assert "Recommended" in str(app.screen.query_one("#recommendation", Static).render())


@pytest.mark.parametrize(
    ("budget", "trial_tokens", "message"),
    [
        ("lots", "16384", "The study budget 'lots': give positive training tokens"),
        ("", "16384", "Give the study a budget"),
        ("10k", "16384", "A budget of 10,000 tokens is below one trial (16,384 tokens)."),
        ("10min", "1", "A trial budget of 1 tokens is below one optimizer step"),
        ("10min", "many", "Training tokens per trial must be a whole number."),
    ],
)
async def test_the_time_step_refuses_a_budget_it_cannot_run_and_keeps_the_choices(
    tiny_model: Path, tmp_path: Path, budget: str, trial_tokens: str, message: str
):
    tuner = FakeTuner()
    app = AdvisorApp(runner=tuner, runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), goal=0.25)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(GoalScreen())
        await pilot.pause()
        app.screen.query_one("#study-budget", Input).value = budget
        app.screen.query_one("#trial-tokens", Input).value = trial_tokens
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, GoalScreen) and tuner.calls == []
        assert message in str(app.screen.query_one("#error", Static).render())
        assert message not in str(app.screen.query_one("#duration", Static).render())  # said once
        assert app.choices.goal == 0.25 and app.choices.study_budget == "10min"


async def test_the_study_screen_says_what_runs_between_trial_steps(tiny_model: Path, tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), study_budget=None, trials=1)
    async with app.run_test(size=(100, 30)) as pilot:
        app.start_study(app.study_settings(), tmp_path / "run")
        await settle(app, pilot)
        screen = app.screen
        screen.running = True
        screen.study_event(StudyEvent(events.Stage("scoring the base model on held-out target and general text")))
        screen.show_status()
        status = str(screen.query_one("#status", Static).render())
        assert status.startswith("running: scoring the base model on held-out") and "1/1 trials ended" in status
        screen.study_event(StudyEvent(events.TrialStarted(0, 1, 1, 4, PARAMS)))
        screen.study_event(StudyEvent(events.TrialProgress(0, 1, 4, 2.0, 200.0)))
        screen.show_status()
        status = str(screen.query_one("#status", Static).render())
        assert status.startswith("running: trial 0;") and "scoring the base model" not in status  # the table's 0


async def test_the_status_counts_the_running_trials_tokens_and_keeps_the_time_across_a_stop(
    tiny_model: Path, tmp_path: Path
):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), study_budget="40k", trial_tokens=16384)
    async with app.run_test(size=(100, 30)) as pilot:
        app.start_study(app.study_settings(), tmp_path / "run")
        await settle(app, pilot)
        screen = app.screen
        screen.running, screen.spent_share, screen.finished_trials = True, 0.0, 0
        screen.study_event(StudyEvent(events.TrialStarted(5, 1, 0, 8, PARAMS)))
        screen.study_event(StudyEvent(events.TrialProgress(5, 4, 8, 2.0, 200.0)))  # 4 x 2,048 tokens of 40,000
        screen.show_status()
        status = str(screen.query_one("#status", Static).render())
        assert status.startswith("running: trial 5; 0 trials ended, 20% of the budget spent"), status
        screen.started -= 90  # 1.5 min into this start, then stopped: the time is kept for the next start
        screen.study_ended(StudyEnded(None, "stopped"))
        assert 89 < screen.elapsed_before < 95
        screen.running, screen.started = True, time.monotonic()
        screen.show_status()
        assert "1.5 min elapsed" in str(screen.query_one("#status", Static).render())


async def test_the_finished_studys_scatter_shows_the_base_model_and_full_fine_tuning(tiny_model: Path, tmp_path: Path):
    from textual_plotext import PlotextPlot

    from tuner.scoring.plot import BASE_MARKER, FULL_MARKER

    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), study_budget=None, trials=1)
    points = [
        {"label": "base", "general": 0.45, "learning": 0.05, "is_base": True},
        {"label": "trial 0", "general": 0.40, "learning": 0.20},
        {"label": "full fine-tuning", "general": 0.35, "learning": 0.30, "is_reference": True},
    ]
    scores = {"plan": {"mode": "pick"}, "base": {"gsm8k": 0.05}, "learning_benchmark": "gsm8k", "points": points}
    finished = Recommendation.from_json({**recommendation(tmp_path / "run"), "trial": 0, "scores": scores})
    async with app.run_test(size=(160, 48)) as pilot:
        app.start_study(app.study_settings(), tmp_path / "run")
        await settle(app, pilot)
        screen = app.screen
        scatter = screen.query_one("#scatter", PlotextPlot)
        assert FULL_MARKER not in str(scatter.render())  # the fake study's own recommendation has no scores
        screen.study_event(StudyEvent(events.StudyFinished(finished, [])))
        await pilot.pause()
        drawn = str(scatter.render())
        assert drawn.count(FULL_MARKER) == 2 and drawn.count(BASE_MARKER) == 2  # each point, and its key
        assert f"{BASE_MARKER} base  {FULL_MARKER} full fine-tuning" in drawn


async def test_a_time_budget_runs_the_study_to_its_budget(tiny_model: Path, tmp_path: Path):
    tuner = FakeTuner()
    app = AdvisorApp(runner=tuner, runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), study_budget="2h")
    settings = app.study_settings()
    assert settings.search_budget.seconds == 7200 and settings.trials == MAX_BUDGET_TRIALS
    async with app.run_test(size=(80, 24)) as pilot:
        app.start_study(settings, tmp_path / "run")
        await settle(app, pilot)
        assert app.screen.query_one("#trials", DataTable).row_count == 3
        assert "study finished" in str(app.screen.query_one("#status", Static).render())
        app.screen.running = True  # the status line as it reads while the study runs, its budget spent
        app.screen.show_status()
        status = str(app.screen.query_one("#status", Static).render())
        assert "3 trials ended, 100% of the budget spent" in status and "under a minute left" in status


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
@pytest.mark.parametrize("step", [TaskScreen, ModelScreen, MemoryScreen, GoalScreen])
async def test_every_step_opens_at_its_heading(tiny_model: Path, tmp_path: Path, step, size):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model))
    async with app.run_test(size=size) as pilot:
        app.push_screen(step())
        await settle(app, pilot)
        assert app.screen.query_one("#step").scroll_y == 0
        assert app.screen.focused is not None  # and the first control has the focus, to answer at once


async def test_the_model_step_checks_the_model_before_going_on(tiny_model: Path, tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ModelScreen())
        await settle(app, pilot)
        field = app.screen.query_one("#model", Input)
        field.value = str(tmp_path / "no-such-model")
        await pilot.pause()
        assert "Press Enter to check" in str(app.screen.query_one("#model-info", Static).render())
        await pilot.press("ctrl+n")  # checked first; it is not there, so the step stays with the reason
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen) and app.choices.model == str(tiny_model)
        assert "no-such-model" in str(app.screen.query_one("#model-info", Static).render())  # said once, above
        assert "cannot be used" in str(app.screen.query_one("#error", Static).render())
        field.value = str(tiny_model)
        await pilot.pause()
        await pilot.press("ctrl+n")  # checked again, found, and the next step opens by itself
        await settle(app, pilot)
        await settle(app, pilot)
        assert isinstance(app.screen, MemoryScreen)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("100KiB", "is below the model's weights alone"),
        ("1MiB", "No trial fits in 1 MiB: the smallest (r=8 on attention, batch 4 x 512 tokens) needs"),
        ("lots", "lots"),
    ],
)
async def test_the_memory_step_refuses_a_budget_no_trial_fits_and_says_so_once(
    tiny_model: Path, tmp_path: Path, budget: str, message: str
):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(MemoryScreen())
        await settle(app, pilot)
        app.screen.query_one("#budget", Input).value = budget
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, MemoryScreen) and app.choices.memory_budget is None
        shown = app.screen.query_one("#error").region  # scrolled into view, not below the estimate
        assert shown.height >= 1 and shown.bottom <= app.screen.query_one("#buttons").region.y
        error = str(app.screen.query_one("#error", Static).render())
        assert message in error
        assert message not in str(app.screen.query_one("#estimate", Static).render())


async def test_own_data_needs_a_file_and_errors_stay_in_the_app(tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")  # the task list has the focus: pick "My own data"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        assert "needs a file" in str(app.screen.query_one("#error", Static).render())


async def test_stop_then_resume_the_study(tiny_model: Path, tmp_path: Path):
    hold = threading.Event()
    tuner = FakeTuner(hold=hold)  # the first step waits for s to be pressed
    app = AdvisorApp(runner=tuner, runs_root=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        app.choices = app.choices.__class__(model=str(tiny_model), trials=2, study_budget=None)
        app.start_study(app.study_settings(), tmp_path / "run")
        await pilot.pause()
        assert tuner.first_step.wait(5)
        await pilot.press("s")
        assert "stopping at the next step" in str(app.screen.query_one("#status", Static).render())
        hold.set()
        await settle(app, pilot)
        assert "stopped; the interrupted work runs again" in str(app.screen.query_one("#status", Static).render())
        table = app.screen.query_one("#trials", DataTable)
        assert "running" not in [table.get_cell(key, "state") for key in table.rows]
        assert table.get_cell("0", "state") == "stopped"
        await pilot.press("r")
        await settle(app, pilot)
        assert len(tuner.calls) == 2
        assert [table.get_cell(key, "state") for key in table.rows] == ["complete", "complete"]
        assert "study finished" in str(app.screen.query_one("#status", Static).render())


async def test_the_real_engine_runs_behind_the_app_on_the_tiny_model(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_DATA_DIR", str(data_dir))
    app = AdvisorApp(runs_root=tmp_path)  # the real runner: tuner.study.run.run_study
    async with app.run_test(size=(100, 30)) as pilot:
        app.choices = app.choices.__class__(model=str(tiny_model), trials=1, trial_tokens=4096, study_budget=None)
        app.start_study(app.study_settings(), tmp_path / "run")
        await settle(app, pilot)
        status = str(app.screen.query_one("#status", Static).render())
        assert "study finished" in status, status
        assert (tmp_path / "run" / "recommendation.json").is_file()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)

        # The full run, launched from the recommendation, trained and scored for real.
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TrainScreen)
        for field, value in (("#epochs", "1"), ("#examples", "40"), ("#eval-limit", "2")):
            app.screen.query_one(field, Input).value = value
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        status = str(app.screen.query_one("#status", Static).render())
        assert "full run finished" in status, status
        report = json.loads((tmp_path / "run" / "train" / "report.json").read_text())
        assert report["settings"]["epochs"] == 1 and report["settings"]["train_examples"] == 40
        assert set(report["scores"]["trained"]["scores"]) == {"hellaswag", "winogrande", "arc_challenge", "gsm8k"}
        assert "adapter:" in log_text(app.screen)

        # Export, from the recommendation: PEFT's own adapter_config.json.
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        await pilot.click("#export")
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)
        config = json.loads((tmp_path / "run" / "export" / "peft" / "adapter_config.json").read_text())
        assert config["r"] == report["settings"]["lora"]["rank"]

    # Opened again on that run directory, the app offers to continue the study.
    reopened = AdvisorApp(run_dir=tmp_path / "run", runner=FakeTuner())
    async with reopened.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        said = str(reopened.screen.query_one(Static).render())
        assert "holds a math study" in said and ": finished. Its recommendation is in recommendation.json." in said
        assert f"Exports for peft are in {tmp_path / 'run' / 'export'}. Open it?" in said
        await pilot.press("y")
        await settle(reopened, pilot)
        assert isinstance(reopened.screen, StudyScreen)


async def test_a_code_study_asks_once_before_running_generated_code(tiny_model: Path, tmp_path: Path):
    tuner = FakeTuner()
    app = AdvisorApp(runner=tuner, runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), study_budget="16384")  # one trial
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "enter", "ctrl+n")  # code
        await pilot.pause()
        assert "runs the code the model writes" in str(app.screen.query_one(Static).render())
        await pilot.press("y")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen) and app.choices.allow_code_execution is True
        await pilot.press("escape")  # back to the task step: the question is not asked again
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        for _ in range(3):
            await pilot.press("ctrl+n")
            await settle(app, pilot)
        assert isinstance(app.screen, StudyScreen) and tuner.allowed == [True]
        assert tuner.calls == [tmp_path / "code"]


async def test_own_data_from_the_file_picker_with_a_preview(tmp_path: Path, monkeypatch, tiny_model: Path):
    from advisor.app.screens.file_picker import FilePickerScreen

    rows = [{"question": f"What is {n} + {n}?", "answer": str(2 * n)} for n in range(5)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "notes.txt").write_text("not data")
    monkeypatch.chdir(tmp_path)
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("down", "down", "enter")  # my own data
        for field, value in (("#prompt-column", "question"), ("#response-column", "answer")):
            app.screen.query_one(field, Input).value = value
        await pilot.click("#browse")
        await pilot.pause(0.5)  # not settle(): the tree's loader is a worker that waits for the next directory
        assert isinstance(app.screen, FilePickerScreen)
        await pilot.press("down", "enter")  # the tree lists pairs.jsonl, not notes.txt
        await pilot.pause(0.5)
        await settle(app, pilot)
        assert app.screen.query_one("#data", Input).value == str(tmp_path / "pairs.jsonl")
        preview = str(app.screen.query_one("#preview-text", Static).render())
        # Formatted as trained: through the model's chat template, the response (the learned part) in bold.
        assert "5 examples" in preview and "chat template" in preview
        assert re.search(r"<\|im_start\|>user\nWhat is (\d) \+ \1\?<\|im_end\|>\n<\|im_start\|>assistant\n\d", preview)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        assert app.choices.data == str(tmp_path / "pairs.jsonl") and app.choices.prompt_column == "question"


class FakeTrainer:
    """Reports a full run's events like tuner.fullrun.train, slowly enough to be stopped; fails when told to."""

    def __init__(
        self, step_pause: float = 0.0, error: str | None = None, checkpoint_at: int | None = None, hold_at: int = 1
    ) -> None:
        self.step_pause, self.error, self.checkpoint_at, self.hold_at = step_pause, error, checkpoint_at, hold_at
        self.calls: list[tuple[Any, Path]] = []
        self.first_step = threading.Event()
        self.go_on = threading.Event()
        """Cleared by a test to hold the run after its first step (until set, at most 5 s)."""
        self.go_on.set()

    def __call__(self, settings: Any, out_dir: Path, options: Any, report: Any) -> dict[str, Any]:
        self.calls.append((settings, out_dir))
        if self.error:
            raise RuntimeError(self.error)
        start = 0 if len(self.calls) == 1 else 4
        report(events.TrainStarted(8, settings.recipe.epochs, start, str(out_dir)))
        for step in range(start + 1, 9):
            if step == self.checkpoint_at:
                (out_dir / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
                (out_dir / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
            if step >= self.hold_at:
                self.first_step.set()
            time.sleep(self.step_pause)
            report(events.TrainProgress(step, 8, step / 8, 2.0 - 0.1 * step, 300.0))
            if step >= self.hold_at:
                self.go_on.wait(5)
        report(events.EpochEvaluated(1, 8, 1.2, 2.1))
        training = {
            "steps": 8,
            "epochs": 1.0,
            "epoch_losses": [{"epoch": 1, "step": 8, "target_loss": 1.2, "general_loss": 2.1}],
        }
        adapter = str(out_dir / "adapter")
        result = RunReport({}, "CPU", str(out_dir), adapter, merged=None, training=training, scoring=None)
        report(events.TrainFinished(result))
        return result


def finished_study(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "recommendation.json").write_text(json.dumps({**recommendation(run_dir), "trial": 0}))
    budget = {"train_tokens": 128, "batch_size": 2, "seq_len": 64}
    settings = {"task": "math", "model": "tiny", "trials": 1, "seed": 0, "budget": budget}
    (run_dir / "settings.json").write_text(json.dumps(settings))
    return run_dir


async def test_the_full_run_stops_resumes_and_shows_errors(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    trainer = FakeTrainer()
    app = AdvisorApp(runner=FakeTuner(), trainer=trainer, runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RecommendationScreen(Recommendation.from_json({**recommendation(run_dir), "trial": 0})))
        await pilot.pause()
        await pilot.press("t")
        await pilot.pause()
        app.screen.query_one("#epochs", Input).value = "0"
        await pilot.pause()  # said as it is typed, where the field is, and the estimate for other values goes
        said = "Epochs: a whole number of at least 1, or empty for 4; got '0'"
        assert said in str(app.screen.query_one("#form-error", Static).render())
        assert str(app.screen.query_one("#estimate", Static).render()).strip() == ""
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert said in str(app.screen.query_one("#status", Static).render())
        assert trainer.calls == []
        screen = app.screen
        screen.recommendation = replace(screen.recommendation, data=DataSize(120, 24_000, 200.0))
        for field, value, message in (
            ("#epochs", "12345678", "Epochs: at most 100 (empty for 4); got 12,345,678"),
            ("#examples", "121", "Training examples: at most 120 (empty for all); got 121"),
            ("#eval-limit", "-3", "Items per benchmark: a whole number of at least 1, or empty for all; got '-3'"),
        ):
            app.screen.query_one(field, Input).value = value
            await pilot.pause()
            assert message in str(app.screen.query_one("#form-error", Static).render()), field
            app.screen.query_one(field, Input).value = ""
        await pilot.pause()
        assert str(app.screen.query_one("#form-error", Static).render()).strip() == ""
        app.screen.query_one("#epochs", Input).value = "2"
        trainer.go_on.clear()  # held after its first step until the stop is asked for
        await pilot.press("ctrl+n")
        assert trainer.first_step.wait(5)
        await pilot.press("s")
        trainer.go_on.set()
        await settle(app, pilot)
        stopped = "stopped at step 2, before the first checkpoint: start again to train from the beginning"
        assert stopped in str(app.screen.query_one("#status", Static).render())
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert "full run finished" in str(app.screen.query_one("#status", Static).render())
        settings, out_dir = trainer.calls[-1]
        assert (settings.recipe.epochs, settings.recipe.batch_size, settings.recipe.seq_len, out_dir) == (
            2,
            2,
            64,
            run_dir / "train",
        )
        assert "epoch 1: held-out 1.2000, general 2.1000" in log_text(app.screen)

    failing = AdvisorApp(runner=FakeTuner(), trainer=FakeTrainer(error="disk full"), runs_root=tmp_path)
    async with failing.run_test(size=(80, 24)) as pilot:
        failing.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(failing, pilot)
        assert "error: disk full" in str(failing.screen.query_one("#status", Static).render())


@pytest.mark.parametrize(("held", "said"), [(5, "stopped at step 6; start again to resume from checkpoint 4"), (7, "")])
async def test_a_stop_says_which_checkpoint_is_kept_and_at_the_last_step_the_run_finishes(
    tmp_path: Path, held: int, said: str
):
    run_dir = finished_study(tmp_path / "run")
    trainer = FakeTrainer(checkpoint_at=4, hold_at=held)
    app = AdvisorApp(runner=FakeTuner(), trainer=trainer, runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        trainer.go_on.clear()
        await pilot.press("ctrl+n")
        assert trainer.first_step.wait(5)
        await pilot.press("s")
        trainer.go_on.set()
        await settle(app, pilot)
        status = str(app.screen.query_one("#status", Static).render())
        assert said in status if said else "full run finished" in status  # the last step's work is not lost


@pytest.mark.parametrize("size", [(60, 20), (80, 24)])
async def test_dialogs_keep_their_buttons_on_a_small_terminal(tmp_path: Path, size):
    from advisor.app.screens.question import QuestionScreen

    run_dir = finished_study(tmp_path / "run")
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    width, height = size
    async with app.run_test(size=size) as pilot:
        app.push_screen(ExportScreen(run_dir))
        await pilot.pause()
        for button in ("#cancel", "#export"):
            region = app.screen.query_one(button).region
            assert region.width > 0 and region.right <= width and region.bottom <= height, (button, region)
        app.pop_screen()
        app.push_screen(QuestionScreen("A question long enough to wrap. " * 8, yes="Allow", no="Do not run code"))
        await pilot.pause()
        for button in ("#no", "#yes"):
            region = app.screen.query_one(button).region
            assert region.width > 0 and region.right <= width and region.bottom <= height, (button, region)


async def test_an_export_it_cannot_write_says_so_in_words(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    (tmp_path / "taken").write_text("a file, not a directory")
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ExportScreen(run_dir))
        await pilot.pause()
        app.screen.query_one("#out", Input).value = str(tmp_path / "taken")
        await pilot.click("#export")
        await pilot.pause()
        error = str(app.screen.query_one("#error", Static).render())
        assert isinstance(app.screen, ExportScreen) and "taken" in error
        assert "Errno" not in error and "--out" not in error


async def test_an_export_over_a_trained_adapter_asks_first_and_writes_only_when_pressed_again(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    adapter = tmp_path / "mine" / "peft"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ExportScreen(run_dir))
        await pilot.pause()
        app.screen.query_one("#out", Input).value = str(tmp_path / "mine")
        await pilot.click("#export")
        await pilot.pause()
        error = str(app.screen.query_one("#error", Static).render())
        assert isinstance(app.screen, ExportScreen) and "holds a trained adapter" in error and "again" in error
        assert (adapter / "adapter_config.json").read_text() == '{"r": 8}'  # nothing written yet
        await pilot.pause(0.5)  # a second click at once would be a double click
        await pilot.click("#export")
        await pilot.pause()
        assert not isinstance(app.screen, ExportScreen), str(app.screen.query_one("#error", Static).render())
        assert (adapter / "adapter_model.safetensors").read_bytes() == b"weights"


async def test_own_data_fields_show_at_80x24(tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")  # my own data
        await pilot.pause()
        buttons = app.screen.query_one("#buttons").region
        assert not app.screen.query_one("#column-fields").display  # only for the columns format (test_own_data.py)
        for field in ("#data", "#browse", "#data-format", "#regime", "#preview"):
            region = app.screen.query_one(field).region
            assert region.height == 3 and region.bottom <= buttons.y, (field, region)


async def test_the_full_run_screen_keeps_its_status_in_view_at_60x20(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    trainer = FakeTrainer()
    app = AdvisorApp(runner=FakeTuner(), trainer=trainer, runs_root=tmp_path)
    async with app.run_test(size=(60, 20)) as pilot:
        app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        assert not app.screen.query_one("#progress").display  # no bar before there is something to measure
        app.screen.query_one("#epochs", Input).value = "0"
        await pilot.press("ctrl+n")
        await pilot.pause()
        status = app.screen.query_one("#status")
        assert "Epochs: a whole number" in str(status.render())
        assert status.region.height >= 1 and status.region.bottom <= 20


async def test_the_full_run_screen_shows_an_existing_run_and_can_report_or_replace_it(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    data = {"train_examples": 7000, "train_tokens": 1_400_000, "tokens_per_second": 200.0}
    per_item = {"hellaswag": 0.8, "winogrande": 0.1, "arc_challenge": 0.3, "gsm8k": 2.3}
    written = {**recommendation(run_dir), "trial": 0, "data": data, "scores": {"plan": {"seconds_per_item": per_item}}}
    (run_dir / "recommendation.json").write_text(json.dumps(written))
    app = AdvisorApp(runner=FakeTuner(), trainer=FakeTrainer(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        # No run yet: all 7,000 examples x 4 epochs would take 7.8 h here, so the form starts with what fits 30 min,
        # and says how long that takes; scoring every item would take hours too, so it starts with 100 items.
        app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#examples", Input).value == "450"
        assert screen.query_one("#eval-limit", Input).value == "100"
        estimate = str(screen.query_one("#estimate", Static).render())
        assert (
            "About" in estimate
            and "360,000 training tokens over 450 examples (30 min at the study's speed)" in estimate
        )
        screen.query_one("#examples", Input).value = ""
        await pilot.pause()
        assert "(7.8 h at the study's speed)" in str(screen.query_one("#estimate", Static).render())
        assert not screen.query_one("#existing").display and not screen.query_one("#replace").display
        app.pop_screen()

        # A finished run with other settings: shown with them, its report on request, replaced on request.
        train_dir = run_dir / "train"
        train_dir.mkdir()
        stored = {"learning_rate": 3e-4, "rank": 16, "alpha": 32.0, "epochs": 2, "train_examples": 40}
        (train_dir / "train_settings.json").write_text(json.dumps(stored))
        training = {"steps": 8, "epochs": 2.0, "epoch_losses": []}
        report = RunReport({"epochs": 2}, "CPU", str(train_dir), str(train_dir / "adapter"), None, training, None)
        (train_dir / "report.json").write_text(json.dumps(report.to_json()))
        app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        screen = app.screen
        existing = str(screen.query_one("#existing", Static).render())
        assert "holds a full run of lr 0.0003, r 16, 2 epochs, 40 examples: finished" in existing
        assert "learning_rate differ from the recommendation" in existing
        assert screen.query_one("#epochs", Input).value == "2" and screen.query_one("#examples", Input).value == "40"
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert "adapter" in log_text(screen)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not train_dir.exists() and (run_dir / "train-replaced-1" / "report.json").is_file()
        assert "moved the earlier run to" in str(screen.query_one("#status", Static).render())
        assert not screen.query_one("#existing").display and screen.query_one("#epochs", Input).value == "4"


async def test_an_export_trains_where_the_study_ran_unless_the_dialog_says_otherwise(tmp_path: Path):
    import yaml
    from textual.widgets import Select

    run_dir = finished_study(tmp_path / "run")
    ran_on = load_preset_hardware(run_dir)
    other = "gpu" if ran_on == "cpu" else "cpu"
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ExportScreen(run_dir))
        await pilot.pause()
        hardware = app.screen.query_one("#hardware", Select)
        assert hardware.value == ran_on
        hardware.value = other
        app.screen.query_one("#out", Input).value = str(tmp_path / "out")
        await pilot.click("#export")
        await pilot.pause()
    preset = yaml.safe_load((tmp_path / "out" / "peft" / "preset.yaml").read_text(encoding="utf-8"))
    assert preset["hardware"] == other


def load_preset_hardware(run_dir: Path) -> str:
    from advisor.presets import preset_from_run

    return preset_from_run(run_dir)[0].hardware


async def test_back_keeps_what_was_typed_on_the_memory_and_time_steps(tiny_model: Path, tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(tiny_model), memory_budget="8GiB")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ModelScreen())
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        await settle(app, pilot)
        assert isinstance(app.screen, MemoryScreen)
        app.screen.query_one("#budget", Input).value = "4GiB"
        await settle(app, pilot)
        await pilot.press("escape")  # back to the model step, then on again: 4GiB, not the 8GiB accepted before
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        await settle(app, pilot)
        assert app.screen.query_one("#budget", Input).value == "4GiB"
        assert "4.00 GiB" in str(app.screen.query_one("#estimate", Static).render())  # estimated for it too
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, GoalScreen) and app.choices.memory_budget == "4GiB"
        app.screen.query_one("#study-budget", Input).value = "20k"
        app.screen.query_one("#trial-tokens", Input).value = "4x"  # not valid yet: kept as typed all the same
        app.screen.query("#goal RadioButton").first().value = True  # learn most
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, MemoryScreen)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert app.screen.query_one("#study-budget", Input).value == "20k"
        assert app.screen.query_one("#trial-tokens", Input).value == "4x"
        assert app.choices.goal == 0.0 and app.screen._chosen_goal() == 0.0
        assert "whole number" in str(app.screen.query_one("#error", Static).render())
