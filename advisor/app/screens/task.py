"""Step 1: what to learn: code, math, or the person's own data (file, format, regime, columns and a preview)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Input, RadioButton, RadioSet, Select, Static
from textual.worker import get_current_worker

from advisor.app.advice import task_advice
from advisor.app.screens.step import StepScreen
from tuner.data.formats import FORMAT_NAMES, FORMATS
from tuner.defaults import DEFAULT_SEQ_LEN

if TYPE_CHECKING:
    from tuner.data.preview import DataPreview
    from tuner.data.render import Segment

TASKS = {"math": "Math (GSM8K)", "code": "Code (instructions and MBPP)", "custom": "My own data"}
FORMAT_OPTIONS = [("auto: from the columns", "auto"), *((FORMAT_NAMES[name], name) for name in FORMATS)]
REGIME_OPTIONS = [("auto: by format", "auto"), ("instruction tuning", "ift"), ("continued pretraining", "cpt")]
"""'auto' stands for DataSettings.regime None: continued pretraining for plain text, instruction tuning otherwise."""
COLUMNS_LISTED = "its columns are"
"""How the data's errors list a file's columns when none holds the format: the step then asks for them."""
CONTEXT_CHARACTERS, CONTEXT_LINES = 100, 3
"""What a preview keeps of the untrained text before an example's first trained text."""
TRAINED_CHARACTERS, TRAINED_LINES = 160, 3
"""What it keeps from there on: with the summary, two examples fit the step at 80x24."""
TRAINED_STYLE = "bold $success"

PreviewKey = tuple[str, str, str | None, str, str]
"""What a preview read: the data, its format, the regime and the two column names."""


def clipped(segments: Sequence[Segment]) -> list[Segment]:
    """An example around its first trained text: a little of what leads to it, then the start of it, marked where
    cut (the trained text is what a person checks)."""
    text = "".join(piece for piece, _ in segments)
    first, position = 0, 0
    for piece, trained in segments:
        if trained:
            first = position
            break
        position += len(piece)
    begin = max(0, first - CONTEXT_CHARACTERS)
    breaks = [index for index in range(begin, first) if text[index] == "\n"]
    if len(breaks) > CONTEXT_LINES:
        begin = breaks[-CONTEXT_LINES - 1] + 1
    end = min(len(text), first + TRAINED_CHARACTERS)
    breaks = [index for index in range(first, end) if text[index] == "\n"]
    if len(breaks) > TRAINED_LINES:
        end = breaks[TRAINED_LINES]
    shown: list[Segment] = [("…", False)] if begin else []
    position = 0
    for piece, trained in segments:
        low, high = max(begin, position), min(end, position + len(piece))
        if low < high:
            shown.append((text[low:high], trained))
        position += len(piece)
    if end < len(text):
        shown.append((f"… ({len(text) - end:,} more characters)", False))
    return shown


def preview_content(preview: DataPreview) -> Content:
    """The preview's summary and its examples as trained, the trained text styled (the data is never markup)."""
    from tuner.data.preview import preview_lines
    from tuner.data.render import DEFAULT_TEMPLATE_NAME

    lines = preview_lines(preview)
    summary = lines[: lines.index("")] if "" in lines else lines
    counts = preview.counts
    if preview.format == "text":
        how = "as plain text"
    elif counts is None:
        how = f"in {DEFAULT_TEMPLATE_NAME}"
        summary.append("No token counts: the model's tokenizer is not at hand yet (a study counts them as it starts).")
    elif not counts.templated:
        how = "as the prompt, then the completion"
    elif counts.default_template:
        how = f"in {DEFAULT_TEMPLATE_NAME}"
    else:
        how = "with the model's chat template"
    parts: list[Content | tuple[str, str] | str] = ["\n".join(summary), f"\n\nExamples as trained, {how}; "]
    parts += ["the trained text in ", ("bold", TRAINED_STYLE), ":"]
    for number, segments in enumerate(preview.samples, start=1):
        parts.append(("\n" if number == 1 else "\n\n") + f"{number}) ")
        parts += [(piece, TRAINED_STYLE) if trained else piece for piece, trained in clipped(segments)]
    return Content.assemble(*parts)


class TaskScreen(StepScreen):
    step_title = "1/4  What should the model learn?"

    def __init__(self) -> None:
        super().__init__()
        self.preview_failure: tuple[PreviewKey, str] | None = None
        """The data error of the last preview, and what it read: Next refuses those choices."""
        self.columns_asked = False
        """A preview found none of the formats in the file's columns: its two column fields stay shown."""
        self.found_format: tuple[PreviewKey, str] | None = None
        """The format the last good preview found, and what it read: the advice follows it."""

    def compose_step(self) -> ComposeResult:
        choices = self.advisor_app.choices
        with RadioSet(id="task"):
            for task, label in TASKS.items():
                yield RadioButton(label, value=task == choices.task, name=task)
        with Vertical(id="custom"):
            with Horizontal(classes="field-row"):
                data = Input(choices.data or "", placeholder="data.jsonl", id="data")
                data.border_title = "JSONL, JSON, CSV or Parquet file, or a hub dataset id"
                yield data
                yield Button("Browse...", id="browse")
            with Horizontal(classes="field-row"):
                yield Select(FORMAT_OPTIONS, value=choices.data_format, allow_blank=False, id="data-format")
                yield Select(REGIME_OPTIONS, value=choices.regime or "auto", allow_blank=False, id="regime")
                yield Button("Preview", id="preview")
            with Horizontal(classes="field-row", id="column-fields"):
                prompt = Input(choices.prompt_column, id="prompt-column")
                prompt.border_title = "Prompt column"
                yield prompt
                response = Input(choices.response_column, id="response-column")
                response.border_title = "Response column"
                yield response
            yield Static("", id="preview-text")

    def on_mount(self) -> None:
        self.query_one("#custom").display = self.advisor_app.choices.task == "custom"
        for select, title in (("#data-format", "Format"), ("#regime", "Training")):
            self.query_one(f"{select} SelectCurrent").border_title = title
        self.show_column_fields()

    def _chosen_task(self) -> str:
        pressed = self.query_one("#task", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "math"

    def _data_choices(self) -> PreviewKey:
        """What the own-data fields say now (the regime's 'auto' as None)."""
        regime = str(self.query_one("#regime", Select).value)
        return (
            self.query_one("#data", Input).value.strip(),
            str(self.query_one("#data-format", Select).value),
            None if regime == "auto" else regime,
            self.query_one("#prompt-column", Input).value.strip(),
            self.query_one("#response-column", Input).value.strip(),
        )

    def advice_text(self) -> str:
        if not self.is_mounted:
            choices = self.advisor_app.choices
            return task_advice(choices.task, choices.data_format, choices.regime)
        key = self._data_choices()
        _, data_format, regime, _, _ = key
        if self.found_format is not None and self.found_format[0] == key:
            data_format = self.found_format[1]  # what the preview of these choices found
        return task_advice(self._chosen_task(), data_format, regime)

    @on(Select.Changed, "#regime")
    def regime_changed(self) -> None:
        self.show_advice()

    @on(RadioSet.Changed, "#task")
    def task_changed(self) -> None:
        self.query_one("#custom").display = self._chosen_task() == "custom"
        self.show_advice()

    @on(Select.Changed, "#data-format")
    def show_column_fields(self) -> None:
        """The two column fields, where they name the data: for that format, or when the file's columns matched none
        of the formats (or were named before)."""
        _, data_format, _, prompt_column, response_column = self._data_choices()
        named = (prompt_column, response_column) != ("prompt", "response")
        self.query_one("#column-fields").display = data_format == "columns" or self.columns_asked or named
        self.show_advice()

    @on(Button.Pressed, "#browse")
    def browse(self, event: Button.Pressed) -> None:
        from advisor.app.screens.file_picker import FilePickerScreen

        event.stop()

        def picked(path: Path | None) -> None:
            if path is not None:
                self.query_one("#data", Input).value = str(path)
                self.start_preview()

        self.app.push_screen(FilePickerScreen(Path.cwd()), picked)

    @on(Button.Pressed, "#preview")
    def preview(self, event: Button.Pressed) -> None:
        event.stop()
        self.start_preview()

    def start_preview(self) -> None:
        key = self._data_choices()
        if not key[0]:
            self.show_preview(key, None, "Own data needs a file or a hub dataset id.")
            return
        self.query_one("#preview-text", Static).update(Content(f"Reading {key[0]}..."))
        self.load_preview(key, self.advisor_app.choices.model)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load_preview(self, key: PreviewKey, model: str) -> None:
        """Read the data as a study will (its format, counts at the row length, two examples); never touches
        widgets. The data's own errors come before the tokenizer loads."""
        from tuner.data.load import task_records
        from tuner.data.preview import preview_data
        from tuner.errors import AdvisorError
        from tuner.models.load import tokenizer_if_quick
        from tuner.settings import DataSettings

        data, data_format, regime, prompt_column, response_column = key
        preview: DataPreview | None = None
        message = ""
        try:
            settings = DataSettings(
                "custom",
                data,
                prompt_column or "prompt",
                response_column or "response",
                format=data_format,
                regime=regime,
            )
            task_records(settings, None)
            # The app does not choose the row length: its studies train at the default one.
            preview = preview_data(settings, DEFAULT_SEQ_LEN, tokenizer_if_quick(model), None)
        except (AdvisorError, ValueError, OSError) as error:
            message = str(error)
        if not get_current_worker().is_cancelled:  # a later preview replaced this one
            self.app.call_from_thread(self.show_preview, key, preview, message)

    def show_preview(self, key: PreviewKey, preview: DataPreview | None, error: str) -> None:
        """Show a preview, or its one-line error (and the column fields, where the file's columns matched no
        format)."""
        shown = self.query_one("#preview-text", Static)
        self.preview_failure = (key, error) if error else None
        self.found_format = (key, preview.format) if preview is not None else None
        self.show_advice()
        if preview is not None:
            shown.update(preview_content(preview))
        else:
            message = Content.styled(error, "$error")
            if COLUMNS_LISTED in error:
                self.columns_asked = True
                self.show_column_fields()
                message += "\nPick the data's format above, or name its prompt and response columns."
            shown.update(message)
        self.call_after_refresh(shown.scroll_visible, animate=False)

    def action_next(self) -> None:
        """Code studies score HumanEval by running the model's code: ask once before going on."""
        from advisor.app.screens.question import QuestionScreen

        if self._chosen_task() != "code" or self.advisor_app.choices.allow_code_execution is not None:
            super().action_next()
            return

        def answered(allow: bool | None) -> None:
            self.advisor_app.choices = replace(self.advisor_app.choices, allow_code_execution=bool(allow))
            super(TaskScreen, self).action_next()

        question = (
            "Code studies score learning on HumanEval, which runs the code the model writes. Each program runs in "
            "a sandbox: its own process group, CPU, memory, file and process limits, no network, a throwaway "
            "directory. Allow it? Without it, trials are scored on forgetting only."
        )
        self.app.push_screen(QuestionScreen(question, yes="Allow", no="Do not run code"), answered)

    def accept(self) -> str | None:
        from tuner.settings import DataSettings

        task = self._chosen_task()
        key = self._data_choices()
        data, data_format, regime, prompt_column, response_column = key
        prompt_column, response_column = prompt_column or "prompt", response_column or "response"
        if task == "custom":
            if not data:
                return "Own data needs a file or a hub dataset id."
            if not Path(data).expanduser().exists() and "/" not in data:
                return f"No such file: {data}"
            try:
                DataSettings(task, data, prompt_column, response_column, format=data_format, regime=regime)
            except ValueError as error:
                return str(error)
            if self.preview_failure is not None and self.preview_failure[0] == key:
                return f"Its preview failed: {self.preview_failure[1]}"
        app = self.advisor_app
        app.choices = replace(
            app.choices,
            task=task,
            data=data if task == "custom" and data else None,
            prompt_column=prompt_column,
            response_column=response_column,
            data_format=data_format,
            regime=regime,
        )
        return None
