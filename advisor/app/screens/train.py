"""The full run from the app: the recommended configuration trained for whole epochs, then scored.

The training runs in a thread worker that never touches widgets: its reporter posts each event as a
message. Stopping ends the run at its next step; launching it again resumes from the last checkpoint.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Footer, Header, Input, Label, ProgressBar, RichLog, Static
from textual_plotext import PlotextPlot

from advisor.app.screens import LOSS_LINE
from advisor.app.screens.base import AdvisorScreen
from advisor.app.screens.run_form import run_form_values
from advisor.app.wording import scores_text, train_start_text, train_summary
from advisor.presets import preset_from_run
from tuner import events
from tuner.defaults import VARIANT_LABELS
from tuner.events import TrainEvent
from tuner.fullrun.checkpoints import OTHER_OUT, SETTINGS_FILE
from tuner.fullrun.handover import read_study, run_estimate
from tuner.fullrun.report import REPORT_JSON as REPORT_FILE
from tuner.fullrun.train import RunOptions
from tuner.records import RunReport
from tuner.scoring.benchmarks import study_benchmarks
from tuner.settings import RunSettings

PREFILL_SECONDS = 30 * 60
"""Where all examples (or all benchmark items) would take longer than this, the form starts with fewer."""
PREFILL_ITEMS = 100


class TrainingStopped(Exception):
    """Raised inside the run's reporter to end it at the person's request (checkpoints are kept)."""


class TrainMessage(Message):
    """One training event, carried from the worker thread to the screen."""

    def __init__(self, event: TrainEvent) -> None:
        super().__init__()
        self.event = event


class TrainEnded(Message):
    """The worker is done: with the report, stopped, or with an error to show."""

    def __init__(self, report: RunReport | None, message: str) -> None:
        super().__init__()
        self.report = report
        self.message = message


class TrainScreen(AdvisorScreen):
    CSS_PATH = "train.tcss"
    BINDINGS = [
        Binding("ctrl+n", "start", "Start"),
        Binding("ctrl+r", "replace", "Replace"),
        Binding("ctrl+o", "show_report", "Report"),
        Binding("s", "stop", "Stop"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.stop_requested = threading.Event()
        self.running = False
        self.curve: list[tuple[int, float]] = []
        self.report: RunReport | None = None
        self.preset, finished = preset_from_run(run_dir)
        self.study = finished.settings
        """The study's recommended preset and its settings: what Start trains, with the form's changes."""
        self.recommendation = read_study(run_dir).recommendation
        self.existing: dict[str, Any] | None = None
        """The settings of the run in train_dir, read once when the screen shows it (not at every binding check)."""

    @property
    def train_dir(self) -> Path:
        return self.run_dir / "train"

    def stored_run(self) -> dict[str, Any] | None:
        """The settings of the full run already in train_dir (None when there is none)."""
        import json

        path = self.train_dir / SETTINGS_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError):
            return None

    def compose(self) -> ComposeResult:
        preset = self.preset
        lora = preset.recipe.lora
        yield Header()
        with Vertical(id="form"):
            yield Static(
                f"Train {VARIANT_LABELS[lora.variant]} r={lora.rank}, alpha={lora.alpha:g}, {lora.targets} layers, "
                f"learning rate {preset.recipe.learning_rate:.3g} into {self.run_dir / 'train'}. The paper trains LoRA "
                "instruction tuning for at least 4 epochs; on a CPU, a few hundred examples keep it to minutes.",
                id="plan",
            )
            yield Static("", id="existing")
            with Horizontal(classes="field"):
                yield Label(f"Epochs (empty: {preset.recipe.epochs})")
                yield Input(str(preset.recipe.epochs), id="epochs", type="integer")
            with Horizontal(classes="field"):
                yield Label("Training examples (empty: all)")
                yield Input("", id="examples", type="integer")
            with Horizontal(classes="field"):
                yield Label("Items per benchmark (empty: all)")
                yield Input("", id="eval-limit", type="integer")
            yield Static("", id="form-error")
            yield Static("", id="estimate")
            with Horizontal(id="actions"):
                yield Button("Start (ctrl+n)", id="start", variant="primary")
                yield Button("Replace (ctrl+r)", id="replace")
                yield Button("Report (ctrl+o)", id="show-report")
        yield Static("", id="status")
        progress = ProgressBar(id="progress", show_eta=True)
        progress.display = False  # shown once training starts: before, it would animate with nothing to measure
        yield progress
        with Horizontal(id="panes") as panes:
            panes.display = False  # the log and the loss curve, once something runs: till then the form has the room
            yield RichLog(id="log", wrap=True, markup=False, highlight=False)
            yield PlotextPlot(id="loss")
        yield Footer()

    def on_mount(self) -> None:
        self.show_existing()

    def show_existing(self) -> None:
        """Say what full run train_dir holds, with its settings, and fill the form from them; with none, start the
        form with fewer examples or items where all of them would take more than PREFILL_SECONDS."""
        stored = self.existing = self.stored_run()
        finished = (self.train_dir / REPORT_FILE).is_file()
        existing = self.query_one("#existing", Static)
        existing.display = stored is not None
        self.query_one("#replace").display = stored is not None
        self.query_one("#show-report").display = finished
        self.query_one("#start", Button).label = "Resume (ctrl+n)" if stored and not finished else "Start (ctrl+n)"
        if stored is None:
            self._prefill()
            self.update_estimate()
            return
        recipe = self.preset.recipe
        wanted = {"learning_rate": recipe.learning_rate, "rank": recipe.lora.rank, "alpha": recipe.lora.alpha}
        differing = [key for key, value in wanted.items() if stored.get(key) not in (None, value)]
        examples = stored.get("train_examples")
        what = (
            f"lr {stored.get('learning_rate', '?'):.3g}, r {stored.get('rank', '?')}, {stored.get('epochs', '?')} "
            f"epochs, {examples if examples else 'all'} examples"
        )
        state = (
            "finished (Report shows it; Start scores it again)"
            if finished
            else "stopped (Resume goes on from its last checkpoint)"
        )
        text = f"{self.train_dir} holds a full run of {what}: {state}."
        if differing:
            text += f" Its {', '.join(differing)} differ from the recommendation: Replace to train the recommendation."
        else:
            text += " Replace moves it aside and starts afresh."
        existing.update(text)
        self.query_one("#epochs", Input).value = str(stored.get("epochs", recipe.epochs))
        self.query_one("#examples", Input).value = str(examples) if examples else ""
        self.update_estimate()

    def _prefill(self) -> None:
        """Fewer examples and items than all where all would take longer than PREFILL_SECONDS at the study's speed."""
        epochs = self.preset.recipe.epochs
        everything = run_estimate(self.recommendation, epochs, None, None, self._benchmarks())
        if everything is None:
            return
        if everything.train_seconds > PREFILL_SECONDS:
            fitting = int(everything.train_examples * PREFILL_SECONDS / everything.train_seconds)
            self.query_one("#examples", Input).value = str(max(fitting, 1))
        if everything.score_seconds is not None and everything.score_seconds > PREFILL_SECONDS:
            self.query_one("#eval-limit", Input).value = str(PREFILL_ITEMS)

    def _benchmarks(self) -> tuple[str, ...]:
        allow = self.advisor_app.choices.allow_code_execution is True
        return study_benchmarks(self.study.task, allow)

    def form_values(self) -> tuple[int | None, int | None, int | None]:
        """The form's epochs, training examples and items per benchmark (advisor.app.screens.run_form)."""
        texts = (self.query_one(f"#{name}", Input).value for name in ("epochs", "examples", "eval-limit"))
        return run_form_values(*texts, self.recommendation.data, self.preset.recipe)

    @on(Input.Changed)
    def update_estimate(self) -> None:
        """How long the run in the form should take, at the speeds the study measured; what is wrong with a field,
        as it is typed (the estimate then goes, not to be read for the values before)."""
        try:
            epochs, examples, limit = self.form_values()
        except ValueError as error:
            self.show_form_error(str(error))
            self.query_one("#estimate", Static).update("")
            return
        self.show_form_error("")
        found = run_estimate(
            self.recommendation, epochs or self.preset.recipe.epochs, examples, limit, self._benchmarks()
        )
        self.query_one("#estimate", Static).update(found.describe() + "." if found else "")

    def show_form_error(self, message: str) -> None:
        """What is wrong with a field, under the fields (taking no room when nothing is)."""
        error = self.query_one("#form-error", Static)
        error.update(f"[red]{message}[/red]" if message else "")
        error.display = bool(message)

    # -- the worker ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False)
    def run_training(self, settings: RunSettings, options: RunOptions) -> None:
        """Train (or resume) the full run; a stop request ends it at the next step."""

        def report(event: TrainEvent) -> None:
            self.post_message(TrainMessage(event))
            # At the last step the run is as good as done: it goes on to save, rather than lose the steps since
            # its last checkpoint.
            if isinstance(event, events.TrainProgress) and event.step < event.total_steps:
                if self.stop_requested.is_set():
                    raise TrainingStopped(self._stopped_at(event.step))

        try:
            trainer = self.advisor_app.trainer
            result = trainer(settings, self.run_dir / "train", options, report)
            self.post_message(TrainEnded(result, "full run finished"))
        except TrainingStopped as stopped:
            self.post_message(TrainEnded(None, str(stopped)))
        except Exception as error:  # noqa: BLE001 (shown in the app, never as a traceback)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            first = first.replace(OTHER_OUT, "Replace (ctrl+r) moves it aside, and Start then trains the form's")
            self.post_message(TrainEnded(None, f"[red]error: {first}[/red]"))

    def _stopped_at(self, step: int) -> str:
        """What a stop at `step` leaves: the checkpoint a new start resumes from, or that it starts afresh."""
        from tuner.fullrun.checkpoints import CHECKPOINTS, latest_checkpoint

        kept = latest_checkpoint(self.train_dir / CHECKPOINTS)
        if kept is None:
            return f"stopped at step {step}, before the first checkpoint: start again to train from the beginning"
        return f"stopped at step {step}; start again to resume from {kept.name.replace('-', ' ')}"

    # -- handlers -----------------------------------------------------------------------------

    @on(TrainMessage)
    def train_event(self, message: TrainMessage) -> None:
        event = message.event
        log = self.query_one("#log", RichLog)
        progress = self.query_one("#progress", ProgressBar)
        if isinstance(event, events.Stage):
            log.write(event.message)
            self.query_one("#status", Static).update(f"{event.message}...")  # what runs now, bar or no bar
        elif isinstance(event, events.TrainStarted):
            progress.display = True
            progress.update(total=event.total_steps, progress=event.start_step)
            log.write(train_start_text(event))
        elif isinstance(event, events.TrainProgress):
            progress.update(progress=event.step)
            self.curve.append((event.step, event.loss))
            self.query_one("#status", Static).update(
                f"step {event.step}/{event.total_steps}, epoch {event.epoch:.2f}, loss {event.loss:.4f}, "
                f"{event.tokens_per_second:,.0f} tokens/s"
            )
            self.draw_loss()
        elif isinstance(event, events.CheckpointSaved):
            log.write(f"checkpoint at step {event.step}")
        elif isinstance(event, events.EpochEvaluated):
            log.write(f"epoch {event.epoch}: held-out {event.target_loss:.4f}, general {event.general_loss:.4f}")
        elif isinstance(event, events.RunScored):
            log.write(f"{event.label}: {scores_text(event)}")

    @on(TrainEnded)
    def train_ended(self, message: TrainEnded) -> None:
        self.running = False
        self.report = message.report or self.report
        self.query_one("#status", Static).update(message.message)
        if message.report is not None:
            for line in train_summary(message.report).splitlines():
                self.query_one("#log", RichLog).write(line)
        # Finished: the log (with the summary) takes the room; stopped or failed: the form comes back, with the
        # run its directory now holds (Replace moves it aside).
        self.query_one("#form").display = message.report is None
        if message.report is None:
            self.show_existing()
        self.refresh_bindings()

    def draw_loss(self) -> None:
        plot = self.query_one("#loss", PlotextPlot)
        plot.plt.clear_data()
        plot.plt.title("training loss")
        plot.plt.plot([s for s, _ in self.curve], [v for _, v in self.curve], color=LOSS_LINE)
        plot.refresh()

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action in ("start", "back"):
            return not self.running
        if action == "replace":
            return not self.running and self.existing is not None
        if action == "show_report":
            return not self.running and (self.train_dir / REPORT_FILE).is_file()
        return True

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        from advisor.presets import preset_run_settings
        from tuner.errors import AdvisorError
        from tuner.fullrun.handover import Overrides, scoring_settings

        try:
            epochs, examples, limit = self.form_values()
            settings = preset_run_settings(self.preset, Overrides(epochs=epochs, train_examples=examples), self.study)
            allow = self.advisor_app.choices.allow_code_execution is True
            options = RunOptions(scoring=scoring_settings(settings, limit=limit, allow_code_execution=allow))
        except (ValueError, AdvisorError) as error:
            self.query_one("#status", Static).update(f"[red]{error}[/red]")
            return
        self.stop_requested.clear()
        self.running = True
        self.curve = []
        self.query_one("#form").display = False  # the log and the loss curve get the room
        self.show_panes()
        self.query_one("#status", Static).update("starting...")
        self.refresh_bindings()
        self.run_training(settings, options)

    @on(Button.Pressed, "#replace")
    def action_replace(self) -> None:
        """Move the full run aside (nothing is deleted) so Start trains the form's settings afresh."""
        if self.running or not self.train_dir.exists():
            return
        number = 1
        while (aside := self.run_dir / f"train-replaced-{number}").exists():
            number += 1
        try:
            self.train_dir.rename(aside)
        except OSError as error:
            self.query_one("#status", Static).update(f"[red]could not move {self.train_dir}: {error.strerror}[/red]")
            return
        self.report = None
        self.query_one("#epochs", Input).value = str(self.preset.recipe.epochs)
        self.query_one("#examples", Input).value = ""
        self.show_existing()
        self.query_one("#status", Static).update(f"moved the earlier run to {aside}; Start trains afresh")
        self.refresh_bindings()

    @on(Button.Pressed, "#show-report")
    def action_show_report(self) -> None:
        """The finished run's summary in the log."""
        import json

        from tuner.errors import AdvisorError

        try:
            report = RunReport.from_json(json.loads((self.train_dir / REPORT_FILE).read_text(encoding="utf-8")))
            lines = train_summary(report).splitlines()
        except (OSError, ValueError, TypeError, KeyError, AdvisorError) as error:
            self.query_one("#status", Static).update(f"[red]cannot read the report: {error}[/red]")
            return
        self.show_panes()
        log = self.query_one("#log", RichLog)
        for line in lines:
            log.write(line)
        self.query_one("#status", Static).update(f"the report of {self.train_dir} is in the log")

    def show_panes(self) -> None:
        """The log and the loss curve, below the form (which then keeps at most 70 % of the height)."""
        self.query_one("#panes").display = True
        self.query_one("#form").styles.max_height = "70%"

    def action_stop(self) -> None:
        self.stop_requested.set()
        self.query_one("#status", Static).update("stopping at the next step...")

    def action_back(self) -> None:
        self.app.pop_screen()
