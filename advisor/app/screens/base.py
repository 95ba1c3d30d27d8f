"""The base of the app's full screens: the app itself, typed, for the screens that read its choices or run its work."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from advisor.app.app import AdvisorApp


class AdvisorScreen(Screen[None]):
    """A full screen of LoRA Advisor (the modal dialogs need nothing of the app and stay plain `ModalScreen`s)."""

    @property
    def advisor_app(self) -> AdvisorApp:
        """`self.app`, typed: the choices so far, the study's runner and the full run's trainer."""
        return cast("AdvisorApp", self.app)
