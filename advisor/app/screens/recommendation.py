"""The recommendation: the chosen configuration with its reasons, and what to do next."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from advisor.app.wording import recommendation_text
from tuner.records import Recommendation


class RecommendationScreen(Screen[None]):
    CSS_PATH = "recommendation.tcss"
    BINDINGS = [
        Binding("t", "train", "Full run"),
        Binding("x", "export", "Export"),
        Binding("d", "show_run_dir", "Run directory"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, recommendation: Recommendation) -> None:
        super().__init__()
        self.recommendation = recommendation

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="body"):
            yield Static(recommendation_text(self.recommendation), id="recommendation")
        with Horizontal(id="actions"):
            yield Button("Full run (t)", id="train", variant="primary")
            yield Button("Export (x)", id="export")
            yield Button("Run dir (d)", id="run-dir")
        yield Footer()

    @property
    def run_dir(self) -> Path:
        return Path(self.recommendation.run_dir or ".")

    @on(Button.Pressed, "#run-dir")
    def action_show_run_dir(self) -> None:
        names = ("recommendation.json", "trials", "study.db", "train", "export")
        present = [name for name in names if (self.run_dir / name).exists()]
        self.notify(f"{self.run_dir}: {', '.join(present)}", timeout=8)

    @on(Button.Pressed, "#train")
    def action_train(self) -> None:
        from advisor.app.screens.train import TrainScreen

        self.app.push_screen(TrainScreen(self.run_dir))

    @on(Button.Pressed, "#export")
    def action_export(self) -> None:
        from advisor.app.screens.export import ExportScreen

        def exported(written: list[Path] | None) -> None:
            if written:
                self.notify("wrote " + ", ".join(str(path) for path in written), timeout=10)

        self.app.push_screen(ExportScreen(self.run_dir), exported)
