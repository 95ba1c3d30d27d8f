"""Step 2: which model: the offline default, a hub id or a local path, with its parameter count."""

from __future__ import annotations

from dataclasses import replace

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Input, Static

from advisor.advice import model_advice
from advisor.screens.step import StepScreen


class ModelScreen(StepScreen):
    step_title = "2/4  Which model?"
    parameters: int | None = None

    def compose_step(self) -> ComposeResult:
        yield Static("Built-in name, hub id (org/name), local directory or .gguf file", classes="field-label")
        yield Input(self.app.choices.model, id="model")  # type: ignore[attr-defined]
        yield Static("", id="model-info")

    def on_mount(self) -> None:
        self.inspect(self.query_one("#model", Input).value)

    def advice_text(self) -> str:
        return model_advice(self.parameters)

    @on(Input.Submitted, "#model")
    def submitted(self, event: Input.Submitted) -> None:
        self.inspect(event.value.strip())

    @work(thread=True, exclusive=True, exit_on_error=False)
    def inspect(self, model: str) -> None:
        """Read the model's config (no weights) and count its parameters; never touches widgets."""
        from tuner.errors import AdvisorError
        from tuner.memory import model_shape

        try:
            shape = model_shape(model)
            parameters = shape.parameters()
            message = f"{parameters / 1e6:,.1f}M parameters, {shape.layers} layers, hidden size {shape.hidden}"
        except AdvisorError as error:
            parameters, message = None, f"[red]{error}[/red]"
        self.app.call_from_thread(self.inspected, parameters, message)

    def inspected(self, parameters: int | None, message: str) -> None:
        self.parameters = parameters
        self.query_one("#model-info", Static).update(message)
        self.show_advice()

    def accept(self) -> str | None:
        model = self.query_one("#model", Input).value.strip()
        if not model:
            return "Give a model."
        self.app.choices = replace(self.app.choices, model=model)  # type: ignore[attr-defined]
        return None
