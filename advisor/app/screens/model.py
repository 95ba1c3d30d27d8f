"""Step 2: which model: the offline default, a hub id or a local path, with its parameter count."""

from __future__ import annotations

from dataclasses import replace

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Input, Static

from advisor.app.advice import model_advice
from advisor.app.screens.step import StepScreen


class ModelScreen(StepScreen):
    step_title = "2/4  Which model?"
    parameters: int | None = None
    """The parameters of the model in the field, where it is the one checked (the advice's figure)."""
    checked_parameters: int | None = None
    checked: str | None = None
    """The model the figures shown belong to."""
    checking: str | None = None
    """The model whose check is running."""
    problem: str | None = None
    """Why the checked model cannot be used (None: it can)."""
    go_on = False
    """Open the next step once the running check passes (Next was pressed during it)."""

    def compose_step(self) -> ComposeResult:
        yield Static("Built-in name, hub id (org/name), local directory or .gguf file", classes="field-label")
        yield Input(self.advisor_app.choices.model, id="model")
        yield Static("", id="model-info")

    def on_mount(self) -> None:
        self.check(self.query_one("#model", Input).value.strip())

    def advice_text(self) -> str:
        return model_advice(self.parameters)

    @on(Input.Changed, "#model")
    def changed(self, event: Input.Changed) -> None:
        value = event.value.strip()
        self.show_error("")  # said of another value
        shown = self.checked_parameters if value == self.checked else None
        if shown != self.parameters:  # the advice's figure is the checked model's, not this one's
            self.parameters = shown
            self.show_advice()
        if value not in (self.checked, self.checking):
            self.query_one("#model-info", Static).update("Press Enter to check this model.")

    @on(Input.Submitted, "#model")
    def submitted(self, event: Input.Submitted) -> None:
        self.check(event.value.strip())

    def check(self, model: str) -> None:
        """Read the model's config in the background, saying so while it runs."""
        self.checking = model
        self.query_one("#model-info", Static).update(f"Checking {escape(model)}: reading its config...")
        self.inspect(model)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def inspect(self, model: str) -> None:
        """Read the model's config (no weights) and count its parameters; never touches widgets."""
        from tuner.errors import AdvisorError
        from tuner.memory.estimate import model_shape

        try:
            shape = model_shape(model)
            parameters, problem = shape.parameters(), None
            message = f"{parameters / 1e6:,.1f}M parameters, {shape.layers} layers, hidden size {shape.hidden}"
        except AdvisorError as error:
            parameters, problem = None, str(error)
            message = f"[red]{escape(problem)}[/red]"
        self.app.call_from_thread(self.inspected, model, parameters, problem, message)

    def inspected(self, model: str, parameters: int | None, problem: str | None, message: str) -> None:
        if model != self.checking:
            return  # another check was started since
        self.checking = None
        self.checked, self.parameters, self.problem = model, parameters, problem
        self.checked_parameters = parameters
        self.query_one("#model-info", Static).update(message)
        self.show_advice()
        if self.go_on:
            self.go_on = False
            self.action_next()

    def accept(self) -> str | None:
        model = self.query_one("#model", Input).value.strip()
        if not model:
            return "Give a model."
        if model != self.checked:
            self.go_on = True
            if model != self.checking:
                self.check(model)
            return f"Checking {model} first; the next step opens when it is found."
        if self.problem is not None:
            return "This model cannot be used (the reason is above): give another."
        self.advisor_app.choices = replace(self.advisor_app.choices, model=model)
        return None
