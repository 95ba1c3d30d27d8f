"""The frame every wizard step shares: a title, the step's controls, the advice behind it, Back and Next."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Static

from advisor.app.screens.base import AdvisorScreen


class StepScreen(AdvisorScreen):
    """A wizard step; subclasses give `step_title`, `compose_step`, `advice_text` and `accept`."""

    CSS_PATH = "step.tcss"
    AUTO_FOCUS = None  # focused in on_screen_resume, without scrolling the heading away
    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
    ]
    step_title = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="step"):
            yield Static(self.step_title, classes="step-title")
            yield from self.compose_step()
            yield Static("", id="error")
            yield Static(self.advice_text(), id="advice")
        with Horizontal(id="buttons"):
            yield Button("Back", id="back")
            yield Button("Next", id="next", variant="primary")
        yield Footer()

    def compose_step(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        """Show again what was typed here before Back left the step (after the step's own set-up, which fills the
        fields from the choices accepted so far; each change is checked as typing would be)."""
        typed = self.advisor_app.choices.typed
        for field in self.query(Input):
            kept = typed.get(self._typed_key(field))
            if kept is not None and kept != field.value:
                field.value = kept

    def _typed_key(self, field: Input) -> str:
        return f"{type(self).__name__}#{field.id}"

    def keep_typed(self) -> None:
        """Keep what is typed in this step's fields, valid or not, so that Back loses nothing."""
        typed = {self._typed_key(field): field.value for field in self.query(Input) if field.id}
        choices = self.advisor_app.choices
        self.advisor_app.choices = replace(choices, typed={**choices.typed, **typed})

    def on_screen_resume(self) -> None:
        """Open at the step's heading, the first control focused (so typing answers the question at once) without
        the scroll into view that would take the heading off a small terminal."""
        if self.focused is None or self.focused.id == "step":
            first = next(iter(self.query("RadioSet, Input")), None)
            if first is not None:
                first.focus(scroll_visible=False)
        self.call_after_refresh(self.query_one("#step", VerticalScroll).scroll_home, animate=False)

    def advice_text(self) -> str:
        return ""

    def accept(self) -> str | None:
        """Store this step's choices in the app; return a message to show instead when they are not valid."""
        return None

    def show_advice(self) -> None:
        self.query_one("#advice", Static).update(self.advice_text())

    def show_error(self, message: str) -> None:
        error = self.query_one("#error", Static)
        error.update(message)
        if message:  # below a long estimate or preview it would be off screen
            self.call_after_refresh(error.scroll_visible, animate=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "next":
            self.action_next()
        elif event.button.id == "back":
            self.action_back()

    def action_next(self) -> None:
        error = self.accept()
        self.show_error(error or "")
        if error is None:
            self.keep_typed()  # what a later visit shows: the values accepted, not those an earlier Back kept
            self.advisor_app.next_step()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.keep_typed()
            self.app.pop_screen()
