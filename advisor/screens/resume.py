"""Opened on a run directory that holds a study: continue it, or start a new one."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ResumeScreen(ModalScreen[bool]):
    """Asks once; dismisses with True to continue the study."""

    DEFAULT_CSS = """
    ResumeScreen { align: center middle; }
    #dialog { width: 64; height: auto; padding: 1 2; border: thick $primary; background: $surface; }
    #dialog Horizontal { height: 3; align-horizontal: right; margin-top: 1; }
    #dialog Button { margin-left: 1; }
    """
    BINDINGS = [("y", "answer(True)", "Continue"), ("n", "answer(False)", "New study")]

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.summary)
            with Horizontal():
                yield Button("New study", id="new")
                yield Button("Continue", id="continue", variant="primary")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "continue")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
