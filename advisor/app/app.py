"""The Textual app: the guided session from the first question to a recommendation (the App only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding

from advisor.app.advice import Choices
from tuner.defaults import MAX_BUDGET_TRIALS
from tuner.events import Event, TrainEvent
from tuner.records import Recommendation, RunReport
from tuner.settings import DataSettings, RunSettings, StudySettings, TrainBudget
from tuner.study.budget import StudyBudget

if TYPE_CHECKING:
    from tuner.fullrun.train import RunOptions

Runner = Callable[..., Recommendation]
"""Runs a study to its end: (settings, run_dir, report, allow_code_execution=...) -> the recommendation."""
Trainer = Callable[..., RunReport]
"""Runs the full run: (run settings, out_dir, run options, report) -> the report."""


def run_tuner(
    settings: StudySettings, run_dir: Path, report: Callable[[Event], None], allow_code_execution: bool = False
) -> Recommendation:
    """The real study, as `advisor tune` runs it: the search space its memory budget allows."""
    from tuner.data.load import resolve_data_dir
    from tuner.study.options import StudyOptions
    from tuner.study.run import run_study

    options = StudyOptions(data_dir=resolve_data_dir(None), report=report, allow_code_execution=allow_code_execution)
    recommendation = run_study(settings, run_dir, options)
    assert recommendation is not None  # only a worker returns none
    return recommendation


def run_trainer(
    settings: RunSettings, out_dir: Path, options: RunOptions, report: Callable[[TrainEvent], None]
) -> RunReport:
    """The real full run, as `advisor train` runs it."""
    from tuner.data.load import resolve_data_dir
    from tuner.fullrun.train import train_run

    return train_run(settings, out_dir, data_dir=resolve_data_dir(None), options=options, report=report)


def stored_settings(run_dir: Path) -> StudySettings | None:
    """The settings of the study in a run directory, or None when it holds none."""
    path = run_dir / "settings.json"
    if not (run_dir / "study.db").is_file() or not path.is_file():
        return None
    return StudySettings.from_json(json.loads(path.read_text(encoding="utf-8")))


def reopen_summary(run_dir: Path, settings: StudySettings) -> tuple[str, bool]:
    """What a run directory holds, for the question that reopens it: the study (finished, or how many trials it
    has), its recommendation, the full run (finished or stopped) and the exports; and whether the study finished."""
    from tuner.fullrun.checkpoints import SETTINGS_FILE
    from tuner.fullrun.report import REPORT_JSON

    spend = settings.search_budget
    size = f"{settings.trials} trials" if spend is None else f"a budget of {spend.describe()}"
    trials = len(list((run_dir / "trials").glob("trial_*.json")))
    finished = (run_dir / "recommendation.json").is_file()
    state = "finished" if finished else f"stopped after {trials} trial{'s' * (trials != 1)}"
    lines = [
        f"{run_dir} holds a {settings.task} study of {settings.model} ({size}, trials of "
        f"{settings.budget.train_tokens:,} tokens): {state}."
    ]
    train = run_dir / "train"
    if finished:
        lines.append("Its recommendation is in recommendation.json.")
    if (train / REPORT_JSON).is_file():
        lines.append(f"A full run has finished in {train}.")
    elif (train / SETTINGS_FILE).is_file():
        lines.append(f"A full run was stopped in {train}: it resumes from its last checkpoint.")
    exports = sorted(path.name for path in (run_dir / "export").glob("*") if path.is_dir())
    if exports:
        lines.append(f"Exports for {', '.join(exports)} are in {run_dir / 'export'}.")
    lines.append("Open it?" if finished else "Continue it?")
    return " ".join(lines), finished


class AdvisorApp(App[None]):
    """LoRA Advisor in the terminal."""

    TITLE = "LoRA Advisor"
    SUB_TITLE = "Biderman et al. 2024: LoRA learns less and forgets less"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(
        self,
        runner: Runner = run_tuner,
        run_dir: Path | None = None,
        runs_root: Path = Path("runs"),
        trainer: Trainer = run_trainer,
        watch: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.trainer = trainer
        self.run_dir = run_dir
        self.runs_root = runs_root
        self.shared_study = watch
        """(storage URL, study name): watch a study other processes run, instead of asking for one."""
        self.choices = Choices()

    @property
    def steps(self) -> list[type]:
        from advisor.app.screens.goal import GoalScreen
        from advisor.app.screens.memory import MemoryScreen
        from advisor.app.screens.model import ModelScreen
        from advisor.app.screens.task import TaskScreen

        return [TaskScreen, ModelScreen, MemoryScreen, GoalScreen]

    def on_mount(self) -> None:
        from advisor.app.screens.question import QuestionScreen

        if self.shared_study is not None:
            self.watch_study(*self.shared_study)
            return
        run_dir = self.run_dir
        settings = stored_settings(run_dir) if run_dir is not None else None
        if settings is None or run_dir is None:
            self.push_screen(self.steps[0]())
            return
        summary, finished = reopen_summary(run_dir, settings)

        def answered(resume: bool | None) -> None:
            if resume:
                self.start_study(settings, run_dir)
            else:
                self.push_screen(self.steps[0]())

        self.push_screen(QuestionScreen(summary, yes="Open" if finished else "Continue", no="New study"), answered)

    def next_step(self) -> None:
        """Open the step after the current one, or start the study after the last."""
        kinds = self.steps
        current = type(self.screen)
        if current in kinds and kinds.index(current) + 1 < len(kinds):
            self.push_screen(kinds[kinds.index(current) + 1]())
            return
        settings = self.study_settings()
        taken = run_dir = self.run_dir or self.runs_root / settings.task
        number = 2
        while (found := stored_settings(run_dir)) is not None and found.identity() != settings.identity():
            run_dir, number = taken.with_name(f"{taken.name}-{number}"), number + 1
        if run_dir != taken:
            self.notify(f"{taken} holds a study with other settings: this one goes to {run_dir}", timeout=10)
        self.start_study(settings, run_dir)

    def study_settings(self) -> StudySettings:
        from tuner.memory.sizes import parse_size

        choices = self.choices
        own = choices.task == "custom"  # the format and regime are the own data's: the tasks' data has its own
        data = DataSettings(
            choices.task,
            choices.data,
            choices.prompt_column,
            choices.response_column,
            format=choices.data_format if own else "auto",
            regime=choices.regime if own else None,
        )
        spend = StudyBudget.parse(choices.study_budget, "the study budget") if choices.study_budget else None
        return StudySettings(
            model=choices.model,
            data=data,
            trials=choices.trials if spend is None else MAX_BUDGET_TRIALS,
            budget=TrainBudget(train_tokens=choices.trial_tokens),
            goal=choices.goal,
            memory_budget=parse_size(choices.memory_budget) if choices.memory_budget else None,
            search_budget=spend,
        )

    def watch_study(self, url: str, name: str) -> None:
        """Watch study NAME in the shared storage at URL; its files go to RUNS_ROOT/NAME."""
        from advisor.app.screens.study import StudyScreen
        from tuner.errors import AdvisorError
        from tuner.study.state import run_dir_name
        from tuner.study.watch import open_watched

        try:
            settings = open_watched(url, name)
        except AdvisorError as error:
            self.notify(str(error), severity="error", timeout=10)
            self.push_screen(self.steps[0]())
            return
        self.push_screen(StudyScreen(settings, self.runs_root / run_dir_name(name), watch=(url, name)))

    def start_study(self, settings: StudySettings, run_dir: Path) -> None:
        from advisor.app.screens.study import StudyScreen

        self.log(f"study settings: {settings.to_json()}")
        self.push_screen(StudyScreen(settings, run_dir))
