"""The headless display of a running study: rich progress bars, a line per trial, a summary table (its words in
advisor/app/wording.py, shared with the app)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from advisor.app.wording import (
    describe_params,
    recommendation_text,
    scores_text,
    train_start_text,
    train_summary,
    trial_outcome,
)
from tuner.events import (
    CheckpointSaved,
    DataFound,
    EpochEvaluated,
    Event,
    RunScored,
    Stage,
    StudyFinished,
    StudyStarted,
    TrainEvent,
    TrainFinished,
    TrainProgress,
    TrainStarted,
    TrialEvaluated,
    TrialFinished,
    TrialProgress,
    TrialScored,
    TrialStarted,
)
from tuner.records import StudyScores, TrialRecord
from tuner.scoring.benchmarks import BENCHMARKS


def step_progress(console: Console) -> Progress:
    """A bar per task: description, bar, done/total, a free text field, elapsed and remaining time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class RichReporter:
    """Renders study events: the study bar (trial i/N, ETA) and the running trial's bar (step, loss, tokens/s)."""

    def __init__(self, console: Console, summary_console: Console) -> None:
        self.console = console
        self.summary_console = summary_console
        self.progress = step_progress(console)
        self.study_task: TaskID | None = None
        self.trial_task: TaskID | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Stage):
            if self.console.is_terminal:  # in a log, only outcomes: an error stays the one line on stderr
                self.console.print(f"[dim]{event.message}...[/dim]")
        elif isinstance(event, DataFound):
            self.console.print(f"data: {event.summary}", markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, StudyStarted):
            self.progress.start()
            if event.spent_share is not None:  # a budgeted study: the bar is the budget, in per cent
                self.study_task = self.progress.add_task(
                    "budget %", total=100, completed=min(100, round(100 * event.spent_share)), info=event.budget
                )
            else:
                self.study_task = self.progress.add_task(
                    "trials", total=event.total_trials, completed=event.finished_trials, info=event.run_dir
                )
        elif isinstance(event, TrialStarted):
            if self.trial_task is not None:
                self.progress.remove_task(self.trial_task)
            self.trial_task = self.progress.add_task(
                f"trial {event.index}/{event.total}" if event.total else f"trial {event.index}",
                total=event.steps,
                info=describe_params(event.params),
            )
        elif isinstance(event, TrialProgress) and self.trial_task is not None:
            self.progress.update(
                self.trial_task,
                completed=event.step,
                info=f"loss {event.loss:.4f}  {event.tokens_per_second:,.0f} tok/s",
            )
        elif isinstance(event, TrialEvaluated):
            self.progress.console.print(
                f"  trial {event.number} step {event.step}: held-out loss {event.target_loss:.4f}, "
                f"general {event.general_loss:.4f}, objective {event.objective:.4f}"
            )
        elif isinstance(event, TrialScored):
            self.progress.console.print(f"  trial {event.number} scored: {scores_text(event)}")
        elif isinstance(event, TrialFinished):
            self._trial_finished(event)
        elif isinstance(event, StudyFinished):
            self.progress.stop()
            self.summary_console.print(summary_table(event.trials))
            plot = scores_plot(event.recommendation.scores, self.summary_console)
            if plot:
                self.summary_console.print(plot, markup=False, highlight=False)
            self.summary_console.print(recommendation_text(event.recommendation))

    def _trial_finished(self, event: TrialFinished) -> None:
        if self.study_task is not None and event.spent_share is not None:
            share = min(100, round(100 * event.spent_share))
            self.progress.update(self.study_task, completed=share, info=event.spent)
        elif self.study_task is not None:
            self.progress.advance(self.study_task)
        if self.trial_task is not None:
            self.progress.remove_task(self.trial_task)
            self.trial_task = None
        value = f"objective {event.value:.4f}" if event.value is not None else "no objective"
        reason = f": {event.reason}" if event.reason else ""
        self.progress.console.print(
            f"trial {event.number} {event.state.lower()} ({value}, {event.seconds:.0f} s){reason}"
        )

    def close(self) -> None:
        """Stop the live display (also after an error); prints nothing if it never started."""
        if self.study_task is not None:
            self.progress.stop()


def scores_plot(scores: StudyScores | None, console: Console) -> str | None:
    """The learning-vs-forgetting scatter of a study's scored trials, sized to the console; None without one."""
    from tuner.scoring.plot import terminal_plot

    if not scores or not scores.points or len(scores.points) < 2 or scores.learning_benchmark is None:
        return None
    points = list(scores.points)
    width = max(40, min(console.width, 100))
    title = BENCHMARKS[scores.learning_benchmark].title
    return terminal_plot(points, learning_name=title, width=width, height=20, color=console.is_terminal)


def summary_table(trials: list[TrialRecord]) -> Table:
    """Every finished trial: its configuration, outcome and losses (fits 80 columns)."""
    table = Table(
        title="Trials", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False
    )
    for column in ("#", "lr", "r", "alpha", "targets", "outcome", "obj", "loss", "forgot", "tok/s"):
        table.add_column(column, justify="left" if column in ("targets", "outcome") else "right")

    def number(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    for trial in trials:
        params = trial.params
        lora = trial.lora or {}
        table.add_row(
            str(trial.number),
            number(params.get("learning_rate"), ".1e"),
            str(params.get("rank", "-")),
            number(lora.get("alpha"), "g"),
            str(params.get("targets", "-")) + (" nf4" if params.get("quantize") == "nf4" else ""),
            trial_outcome(trial),
            number(trial.value, ".4f"),
            number(trial.target_loss, ".4f"),
            number(trial.forgetting_rise, "+.4f"),
            number(trial.tokens_per_second, ",.0f"),
        )
    return table


class TrainRichReporter:
    """Renders the full run: a step bar (epoch, loss, tokens/s), checkpoint, epoch and score lines, the summary."""

    def __init__(self, console: Console, summary_console: Console) -> None:
        self.console = console
        self.summary_console = summary_console
        self.progress = step_progress(console)
        self.task: TaskID | None = None

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, Stage):
            if self.console.is_terminal:
                self.progress.console.print(f"[dim]{event.message}...[/dim]")
        elif isinstance(event, DataFound):
            self.progress.console.print(f"data: {event.summary}", markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, TrainStarted):
            self.progress.start()
            self.progress.console.print(train_start_text(event))
            self.task = self.progress.add_task("steps", total=event.total_steps, completed=event.start_step, info="")
        elif isinstance(event, TrainProgress) and self.task is not None:
            info = f"epoch {event.epoch:.2f}  loss {event.loss:.4f}  {event.tokens_per_second:,.0f} tok/s"
            self.progress.update(self.task, completed=event.step, info=info)
        elif isinstance(event, CheckpointSaved):
            if self.console.is_terminal:
                self.progress.console.print(f"[dim]checkpoint at step {event.step}[/dim]")
        elif isinstance(event, EpochEvaluated):
            self.progress.console.print(
                f"epoch {event.epoch} (step {event.step}): held-out loss {event.target_loss:.4f}, "
                f"general text {event.general_loss:.4f}"
            )
        elif isinstance(event, RunScored):
            self.progress.console.print(f"{event.label} scores: {scores_text(event)}")
        elif isinstance(event, TrainFinished):
            self.close()
            self.summary_console.print(train_summary(event.report), highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stop the live display (also after an error)."""
        if self.task is not None:
            self.progress.stop()
            self.task = None
