"""Pick a data file from a directory tree; dismisses with the chosen path, or None."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Static

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataTree(DirectoryTree):
    """Directories, and only the files the study can read."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if p.is_dir() or p.suffix.lower() in DATA_SUFFIXES]


class FilePickerScreen(ModalScreen[Path | None]):
    DEFAULT_CSS = """
    FilePickerScreen { align: center middle; }
    #picker { width: 90%; height: 80%; border: thick $primary; background: $surface; padding: 0 1; }
    #picker DataTree { height: 1fr; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static("Choose a JSONL, JSON, CSV or Parquet file (Enter opens, Esc cancels)")
            yield DataTree(self.start)

    @on(DirectoryTree.FileSelected)
    def chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(event.path)

    def action_cancel(self) -> None:
        self.dismiss(None)
