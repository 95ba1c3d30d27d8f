"""The recommendation: the chosen configuration with its reasons, and what to do next."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from advisor.progress import recommendation_text


class RecommendationScreen(Screen[None]):
    CSS_PATH = "recommendation.tcss"
    BINDINGS = [
        Binding("d", "show_run_dir", "Run directory"),
        Binding("escape", "app.pop_screen", "Back to the study"),
    ]

    def __init__(self, recommendation: dict[str, Any]) -> None:
        super().__init__()
        self.recommendation = recommendation

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="body"):
            yield Static(recommendation_text(self.recommendation), id="recommendation")
        with Horizontal(id="actions"):
            yield Button("Launch the full run", id="train", disabled=True, tooltip="advisor train: not built yet")
            yield Button("Export a preset", id="export", disabled=True, tooltip="advisor export: not built yet")
            yield Button("Show the run directory", id="run-dir", variant="primary")
        yield Footer()

    @on(Button.Pressed, "#run-dir")
    def action_show_run_dir(self) -> None:
        self.notify(f"{self.recommendation['run_dir']}: recommendation.json, trials/, study.db", timeout=8)
