"""Step 1: what to learn: code, math, or the person's own data (file, columns and a preview)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from advisor.app.advice import task_advice
from advisor.app.screens.step import StepScreen

TASKS = {"math": "Math (GSM8K)", "code": "Code (instructions and MBPP)", "custom": "My own data"}


class TaskScreen(StepScreen):
    step_title = "1/4  What should the model learn?"

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
                prompt = Input(choices.prompt_column, id="prompt-column")
                prompt.border_title = "Prompt column"
                yield prompt
                response = Input(choices.response_column, id="response-column")
                response.border_title = "Response column"
                yield response
                yield Button("Preview", id="preview")
            yield Static("", id="preview-text")

    def on_mount(self) -> None:
        self.query_one("#custom").display = self.advisor_app.choices.task == "custom"

    def _chosen_task(self) -> str:
        pressed = self.query_one("#task", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "math"

    def advice_text(self) -> str:
        return task_advice(self._chosen_task() if self.is_mounted else self.advisor_app.choices.task)

    @on(RadioSet.Changed, "#task")
    def task_changed(self) -> None:
        self.query_one("#custom").display = self._chosen_task() == "custom"
        self.show_advice()

    @on(Button.Pressed, "#browse")
    def browse(self, event: Button.Pressed) -> None:
        from advisor.app.screens.file_picker import FilePickerScreen

        event.stop()

        def picked(path: Path | None) -> None:
            if path is not None:
                self.query_one("#data", Input).value = str(path)
                self.load_preview(str(path), *self._columns())

        self.app.push_screen(FilePickerScreen(Path.cwd()), picked)

    @on(Button.Pressed, "#preview")
    def preview(self, event: Button.Pressed) -> None:
        event.stop()
        self.load_preview(self.query_one("#data", Input).value.strip(), *self._columns())

    def _columns(self) -> tuple[str, str]:
        return self.query_one("#prompt-column", Input).value.strip(), self.query_one("#response-column", Input).value

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load_preview(self, data: str, prompt_column: str, response_column: str) -> None:
        """Read the first examples through the same loader the study uses; never touches widgets."""
        from rich.markup import escape

        from tuner.data.prepare import format_pair, load_pairs
        from tuner.errors import AdvisorError
        from tuner.models.load import tokenizer_if_quick
        from tuner.settings import DataSettings

        try:
            settings = DataSettings(
                task="custom", source=data, prompt_column=prompt_column, response_column=response_column.strip()
            )
            pairs = load_pairs(settings, None)
            model = self.advisor_app.choices.model
            tokenizer = tokenizer_if_quick(model)
            shown = []
            for pair in pairs.select(range(min(3, len(pairs)))):
                prompt, response = format_pair(tokenizer, pair["prompt"], pair["response"])
                # The prompt carries no loss; the response (bold) is what the model learns to write.
                shown.append(f"{escape(prompt[-300:])}[b]{escape(response[:300])}[/b]")
            how = f"{model}'s chat template" if tokenizer is not None else "the instruction format"
            message = f"{len(pairs)} examples; the first three as trained ({how}; learned part in bold):\n\n"
            message += "\n\n".join(shown)
        except (AdvisorError, ValueError) as error:
            message = f"[red]{error}[/red]"
        self.app.call_from_thread(self.query_one("#preview-text", Static).update, message)

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
        task = self._chosen_task()
        data = self.query_one("#data", Input).value.strip() or None
        if task == "custom":
            if not data:
                return "Own data needs a file or a hub dataset id."
            if not Path(data).expanduser().exists() and "/" not in data:
                return f"No such file: {data}"
        prompt_column, response_column = self._columns()
        app = self.advisor_app
        app.choices = replace(
            app.choices,
            task=task,
            data=data if task == "custom" else None,
            prompt_column=prompt_column or "prompt",
            response_column=response_column.strip() or "response",
        )
        return None
