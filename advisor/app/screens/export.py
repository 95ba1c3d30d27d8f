"""Export the recommendation as another tool's config: pick the format and the directory."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from advisor.exports import FORMATS

HARDWARE_CHOICES = [("on a GPU (bf16)", "gpu"), ("on a CPU (float32)", "cpu")]
"""Where the exported config trains (the preset's hardware; the study's by default)."""


class ExportScreen(ModalScreen["list[Path] | None"]):
    """Writes the study's recommendation in the chosen format; dismisses with the files written (None: cancelled)."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    #dialog {
        width: 72; max-width: 100%; height: auto; max-height: 100%;
        padding: 0 1; border: thick $primary; background: $surface;
    }
    #dialog Select { width: 1fr; }
    #dialog Horizontal { height: 3; align-horizontal: right; }
    #dialog Button { margin-left: 1; }
    #error { color: $error; height: auto; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    replace_confirmed: Path | None = None
    """An --out that holds something, which the person chose to write into by pressing Export a second time."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def _study_hardware(self) -> str:
        """Where the study ran ('cpu' or 'gpu'), what the export trains on unless changed; 'gpu' when unknown."""
        from advisor.presets import preset_from_run
        from tuner.errors import AdvisorError

        try:
            return preset_from_run(self.run_dir)[0].hardware
        except AdvisorError:
            return "gpu"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Export the recommended configuration for")
            with Horizontal(id="choices"):
                yield Select([(name, name) for name in FORMATS], value=FORMATS[0], allow_blank=False, id="format")
                yield Select(HARDWARE_CHOICES, value=self._study_hardware(), allow_blank=False, id="hardware")
            yield Label("into the directory")
            yield Input(str(self.run_dir / "export"), id="out")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Export", id="export", variant="primary")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#export")
    @on(Input.Submitted, "#out")
    def export(self) -> None:
        from advisor.exports import export_preset, for_hardware
        from advisor.presets import preset_from_run
        from tuner.errors import AdvisorError
        from tuner.rundir import check_out_dir

        fmt = str(self.query_one("#format", Select).value)
        hardware = str(self.query_one("#hardware", Select).value)
        out = Path(self.query_one("#out", Input).value.strip() or self.run_dir / "export") / fmt
        try:
            try:  # what a person made there is replaced only when they press Export again (the CLI's --force)
                check_out_dir(out, "export", force=out == self.replace_confirmed)
            except AdvisorError as error:
                if "--force" not in str(error):
                    raise
                self.replace_confirmed = out
                held = str(error).split(": pass --force", 1)[0].replace("--out ", "")
                self.query_one("#error", Static).update(f"{held}: press Export again to write into it anyway.")
                return
            preset, finished = preset_from_run(self.run_dir)
            preset, origin = for_hardware(preset, finished.origin(), hardware)
            written = export_preset(preset, fmt, out, origin)
        except OSError as error:
            where = error.filename or out
            self.query_one("#error", Static).update(f"Cannot write {where}: {error.strerror or error}.")
            return
        except (AdvisorError, ValueError) as error:
            self.query_one("#error", Static).update(str(error).replace("--out ", ""))
            return
        self.dismiss(written)
