"""The live study: trials table, the running trial's loss curve, learning against forgetting, pause/stop/resume.

The study runs in a thread worker that never touches widgets: its reporter posts each tuner event as a
message, and the handlers here update the screen. A study other processes run through a shared storage is
watched instead: the worker polls the storage and posts the same events.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from advisor.app.screens.base import AdvisorScreen
from advisor.app.screens.study_plots import StudyPlots
from advisor.app.screens.study_status import Progress, trial_share
from advisor.app.wording import describe_params, first_line, trial_row
from tuner import events
from tuner.data.prepare import CLI_ROWS_ADVICE
from tuner.events import Event
from tuner.records import Recommendation, TrialRecord
from tuner.settings import StudySettings
from tuner.study.watch import INTERRUPTED

WATCH_SECONDS = 2.0
"""How often a watched study's storage is looked at."""

COLUMNS = ("#", "state", "loss", "configuration", "general", "learning", "reason")
"""The trials table's columns: what each trial is and its held-out loss first (the configuration is a few columns,
'all r16 1.3e-3'); the scores, often not yet measured while the study runs, scroll into view on a narrow terminal."""


class StudyStopped(Exception):
    """Raised inside the study's reporter to end the run at the person's request (finished trials are kept)."""


class StudyEvent(Message):
    """One tuner event, carried from the worker thread to the screen."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class StudyEnded(Message):
    """The worker is done: with the recommendation, stopped, or with an error to show."""

    def __init__(self, recommendation: Recommendation | None, message: str) -> None:
        super().__init__()
        self.recommendation = recommendation
        self.message = message


class StudyScreen(StudyPlots, AdvisorScreen):
    CSS_PATH = "study.tcss"
    BINDINGS = [
        Binding("p", "pause", "Pause after trial"),
        Binding("s", "stop", "Stop now"),
        Binding("s", "stop_watching", "Stop watching"),
        Binding("r", "resume", "Resume"),
        Binding("enter", "recommendation", "Recommendation", priority=True),
        Binding("escape", "back", "Back", show=False),  # said in the status line where it is the way on
    ]

    def __init__(self, settings: StudySettings, run_dir: Path, watch: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.run_dir = run_dir
        self.shared_study = watch
        """(storage URL, study name) of a study other processes run, watched here; None: this app runs it."""
        self.watched = f"study {watch[1]!r}" if watch is not None else ""
        """The watched study and its storage, as the status line names them."""
        self.pause_requested = threading.Event()
        self.stop_requested = threading.Event()
        self.running = False
        self.started = 0.0
        self.elapsed_before = 0.0
        """Seconds the study ran in this app before its latest start (a stop and resume keep them)."""
        self.current_trial: int | None = None
        """The trial training now, as the table numbers it; None between trials (set-up, range test, scoring)."""
        self.trial_spent = 0.0
        """The running trial's share of the study's budget so far (its steps' tokens, or its seconds)."""
        self.trial_started = 0.0
        self.finished_trials = 0
        self.resumed_from = 0
        """Trials finished before this run of the worker: the ETA counts only what this run did."""
        self.total_trials = settings.trials
        self.stage: str | None = None
        """What the study is doing between trial steps (loading, the range test, scoring), shown while it lasts."""
        self.spent_share: float | None = None
        """The share of the study's budget spent, where it has one."""
        self.resumed_share = 0.0
        """The share spent before this run of the worker."""
        self.curve: list[tuple[int, float]] = []
        self.curve_trial: int | None = None
        """The trial whose training curve is drawn."""
        self.points: dict[str, tuple[float, float]] = {}
        self.marked: dict[str, tuple[float, float, str]] = {}
        """Points drawn apart from the trials, by label, with their markers: the base model and full fine-tuning,
        once the study ends."""
        self.recommendation: Recommendation | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="status")
        with Horizontal(id="panes"):
            yield DataTable(id="trials", cursor_type="row", zebra_stripes=True)
            with Vertical(id="plots"):
                yield PlotextPlot(id="curve")
                yield PlotextPlot(id="scatter")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#trials", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.draw_curve(None)  # titled and labelled from the start, not once data comes
        self.draw_scatter()
        self.action_resume()
        self.set_interval(1.0, self.show_status)

    # -- the worker ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False)
    def run_study(self) -> None:
        """Run (or resume) the study; every event becomes a message, a stop request ends it between steps."""

        def report(event: Event) -> None:
            self.post_message(StudyEvent(event))
            # Any event is a safe place to stop: what ended is stored, what was running runs again on resume.
            if self.stop_requested.is_set() and not isinstance(event, events.StudyFinished):
                raise StudyStopped("stopped; the interrupted work runs again on resume")
            if self.pause_requested.is_set() and isinstance(event, events.TrialFinished):
                raise StudyStopped("paused after a finished trial")

        try:
            allow = self.advisor_app.choices.allow_code_execution is True
            runner = self.advisor_app.runner
            recommendation = runner(self.settings, self.run_dir, report, allow_code_execution=allow)
            self.post_message(StudyEnded(recommendation, "study finished"))
        except StudyStopped as stopped:
            self.post_message(StudyEnded(None, str(stopped)))
        except Exception as error:  # noqa: BLE001 (shown in the app, never as a traceback)
            said = first_line(error).replace(CLI_ROWS_ADVICE, "(give more data, or a larger study budget per trial)")
            self.post_message(StudyEnded(None, f"[red]error: {said}[/red]"))

    @work(thread=True, exclusive=True, exit_on_error=False)
    def watch_study(self, url: str, name: str) -> None:
        """Look at the shared study every WATCH_SECONDS and post what changed; once it has finished, write its files
        into the run directory (where the recommendation and export screens read them)."""
        from tuner.study.report import report_study
        from tuner.study.watch import StudyWatcher

        worker = get_current_worker()
        try:
            watcher = StudyWatcher(url, name)
            written, failing = False, False
            while not (worker.is_cancelled or self.stop_requested.is_set()):
                try:
                    changes = watcher.poll()
                except Exception as error:  # noqa: BLE001 (a storage that stops answering may answer again)
                    failing = True
                    self.post_message(StudyEvent(events.Stage(f"cannot read the storage ({first_line(error)})")))
                    self.stop_requested.wait(WATCH_SECONDS)
                    continue
                if failing:
                    failing = False
                    changes = [events.Stage("the storage answers again"), *changes]
                if not written or watcher.finished:  # first the trials that ended before: shown from their records
                    found, written = report_study(url, name, self.run_dir), True
                for event in changes:
                    self.post_message(StudyEvent(event))
                if watcher.finished:
                    self.post_message(StudyEnded(found.recommendation, "study finished"))
                    return
                self.stop_requested.wait(WATCH_SECONDS)  # wakes at once when the person stops watching
            self.post_message(StudyEnded(None, "stopped watching; the study's workers go on"))
        except Exception as error:  # noqa: BLE001 (shown in the app, never as a traceback)
            self.post_message(StudyEnded(None, f"[red]error: {first_line(error)}[/red]"))

    # -- handlers -----------------------------------------------------------------------------

    @on(StudyEvent)
    def study_event(self, message: StudyEvent) -> None:
        event = message.event
        table = self.query_one("#trials", DataTable)
        self.stage = event.message if isinstance(event, events.Stage) else None
        if isinstance(event, events.StudyStarted):
            self.total_trials, self.finished_trials = event.total_trials, event.finished_trials
            self.resumed_from = event.finished_trials
            self.spent_share = self.resumed_share = event.spent_share or 0.0
            if self.shared_study is not None:
                self.watched = event.run_dir
            self.show_stored_trials()
        elif isinstance(event, events.TrialStarted):
            self.current_trial, self.trial_spent, self.trial_started = event.number, 0.0, time.monotonic()
            row = (str(event.number), "running", "-", describe_params(event.params), "-", "-", "")
            if str(event.number) in table.rows:
                table.remove_row(str(event.number))
            table.add_row(*row, key=str(event.number))
            table.move_cursor(row=table.get_row_index(str(event.number)))
        elif isinstance(event, events.TrialProgress):
            if event.number != self.curve_trial:  # trials run side by side (or are watched): one curve each
                self.curve, self.curve_trial = [], event.number
            self.curve.append((event.step, event.loss))
            self.draw_curve(event.number)
            self.trial_spent = trial_share(self.settings, event.step, time.monotonic() - self.trial_started)
        elif isinstance(event, events.TrialEvaluated):
            self._cell(event.number, "loss", f"{event.target_loss:.4f}")
        elif isinstance(event, events.TrialScored):
            if event.general is not None:
                self._cell(event.number, "general", f"{event.general:.3f}")
            if event.learning is not None:
                self._cell(event.number, "learning", f"{event.learning:.3f}")
                if event.general is not None:
                    self.points[f"trial {event.number}"] = (event.general, event.learning)
                    self.draw_scatter()
        elif isinstance(event, events.TrialFinished):
            if event.reason != INTERRUPTED:  # a dead worker's trial is not counted: it runs again, as a new one
                self.finished_trials += 1
            self.spent_share = event.spent_share
            self.current_trial, self.trial_spent = None, 0.0
            self._cell(event.number, "state", event.state.lower())
            self._cell(event.number, "reason", (event.reason or "")[:60])
        elif isinstance(event, events.StudyFinished):
            self.recommendation = event.recommendation
            self.mark_points(event.recommendation)

    def show_stored_trials(self) -> None:
        """Rows for the trials a resumed study finished before (their records in RUN_DIR/trials/)."""
        import json

        table = self.query_one("#trials", DataTable)
        latest: TrialRecord | None = None
        for path in sorted((self.run_dir / "trials").glob("trial_*.json")):
            trial = TrialRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            key = str(trial.number)
            if key in table.rows:
                continue

            table.add_row(*trial_row(trial), key=key)
            if trial.general_score is not None and trial.learning_score is not None:
                self.points[f"trial {key}"] = (trial.general_score, trial.learning_score)
            if trial.train_curve and self.curve_trial is None:
                latest = trial
        if self.points:
            self.draw_scatter()
        if latest is not None:  # the last trial that ended, until one trains here
            self.curve = [(int(step), loss) for step, loss in latest.train_curve]
            self.draw_curve(latest.number)

    def _cell(self, number: int, column: str, value: str) -> None:
        table = self.query_one("#trials", DataTable)
        if str(number) in table.rows:
            table.update_cell(str(number), column, value, update_width=True)

    @on(StudyEnded)
    def study_ended(self, message: StudyEnded) -> None:
        if self.running:
            self.elapsed_before += time.monotonic() - self.started
        self.running = False
        self.stage = None
        self.current_trial, self.trial_spent = None, 0.0
        self.recommendation = message.recommendation or self.recommendation
        table = self.query_one("#trials", DataTable)
        for key in list(table.rows):  # a trial cut short is not running any more: it runs again on resume
            if self.shared_study is None and table.get_cell(key, "state") == "running":
                self._cell(int(key.value or 0), "state", "stopped")
        hint = "press Enter for the recommendation" if message.recommendation else "press r to resume"
        if not message.recommendation and message.message.startswith("[red]"):
            hint = "r tries again; Esc goes back to the steps to change what the study runs"
        if self.shared_study is not None and not message.recommendation:
            hint = "ctrl+q quits"
        self.query_one("#status", Static).update(f"{message.message}; {hint}")
        self.refresh_bindings()

    def show_status(self) -> None:
        if not self.running:
            return
        if self.shared_study is not None:
            self.show_watch_status()
            return
        spend = self.settings.search_budget
        if self.current_trial is not None and spend is not None and spend.seconds is not None:
            self.trial_spent = trial_share(self.settings, 0, time.monotonic() - self.trial_started)
        state = "pausing after this trial" if self.pause_requested.is_set() else "running"
        if self.stop_requested.is_set():
            state = "stopping at the next step"
        progress = Progress(
            self.settings.search_budget is not None,
            self.current_trial,
            self.stage,
            max(self.finished_trials, 0),
            self.total_trials,
            self.resumed_from,
            min((self.spent_share or 0.0) + self.trial_spent, 1.0),  # every token counted as it trains
            self.resumed_share,
        )
        ran = time.monotonic() - self.started
        line = progress.line(state, ran, self.elapsed_before + ran)
        self.query_one("#status", Static).update(f"{line}  ({self.run_dir})")

    def show_watch_status(self) -> None:
        """What the watched study's workers have done, and where it is stored."""
        table = self.query_one("#trials", DataTable)
        running = sum(table.get_cell(key, "state") == "running" for key in table.rows)
        if self.settings.search_budget is not None:
            progress = f"{self.finished_trials} trials ended, {self.spent_share or 0.0:.0%} of the budget spent"
        else:
            progress = f"{self.finished_trials} of {self.total_trials} trials ended"
        state = "stopping" if self.stop_requested.is_set() else f"watching {self.watched}"
        doing = f"; {self.stage}" if self.stage else ""
        self.query_one("#status", Static).update(f"{state}: {progress}, {running} running{doing}")

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.shared_study is not None and action in ("pause", "stop", "resume"):
            return False  # other processes run the study: this app only watches it
        if action == "stop_watching":
            return self.shared_study is not None and self.running
        if action in ("pause", "stop"):
            return self.running
        if action == "resume":
            return not self.running and self.recommendation is None
        if action == "recommendation":
            return self.recommendation is not None
        if action == "back":
            return not self.running and self.shared_study is None
        return True

    def action_back(self) -> None:
        """Back to the steps, to change what the study runs (it is stopped or failed; what it stored is kept)."""
        from advisor.app.screens.step import StepScreen

        stack = self.app.screen_stack
        if len(stack) > 1 and isinstance(stack[-2], StepScreen):
            self.app.pop_screen()
        else:  # reopened with --run: no steps beneath it
            self.app.switch_screen(self.advisor_app.steps[0]())

    def action_pause(self) -> None:
        self.pause_requested.set()
        self.show_status()

    def action_stop(self) -> None:
        self.stop_requested.set()
        self.show_status()

    def action_stop_watching(self) -> None:
        self.stop_requested.set()
        self.show_status()

    def action_resume(self) -> None:
        self.pause_requested.clear()
        self.stop_requested.clear()
        self.running = True
        self.started = time.monotonic()
        self.resumed_from = self.finished_trials
        self.refresh_bindings()
        if self.shared_study is not None:
            self.watch_study(*self.shared_study)
        else:
            self.run_study()

    def action_recommendation(self) -> None:
        from advisor.app.screens.recommendation import RecommendationScreen

        if self.recommendation is not None:
            self.app.push_screen(RecommendationScreen(self.recommendation))
