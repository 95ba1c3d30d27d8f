"""Step 4: the goal (learn most to forget least) and the time budget, with an estimated duration."""

from __future__ import annotations

from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, RadioButton, RadioSet, Static

from advisor.advice import GOALS, estimated_seconds, goal_advice
from advisor.screens.step import StepScreen


class GoalScreen(StepScreen):
    step_title = "4/4  Learn most or forget least, and how long may the study take?"

    def compose_step(self) -> ComposeResult:
        choices = self.app.choices  # type: ignore[attr-defined]
        with RadioSet(id="goal"):
            for goal, label in GOALS.items():
                yield RadioButton(f"{label} ({goal:g})", value=goal == choices.goal, name=str(goal))
        yield Static("Trials, and training tokens per trial", classes="field-label")
        yield Input(str(choices.trials), id="trials", type="integer")
        yield Input(str(choices.trial_tokens), id="trial-tokens", type="integer")
        yield Static("", id="duration")

    def on_mount(self) -> None:
        self.show_duration()

    def _chosen_goal(self) -> float:
        pressed = self.query_one("#goal", RadioSet).pressed_button
        return float(pressed.name) if pressed is not None and pressed.name else 0.5

    def advice_text(self) -> str:
        return goal_advice(self._chosen_goal() if self.is_mounted else self.app.choices.goal)  # type: ignore[attr-defined]

    @on(RadioSet.Changed, "#goal")
    def goal_changed(self) -> None:
        self.show_advice()

    @on(Input.Changed)
    def show_duration(self) -> None:
        numbers = self._numbers()
        if numbers is None:
            text = "Give whole numbers to see the duration."
        else:
            minutes = estimated_seconds(*numbers) / 60
            text = f"About {minutes:.0f} min on this project's 2-core CPU (200 training tokens/s; a GPU is far faster)."
        self.query_one("#duration", Static).update(text)

    def _numbers(self) -> tuple[int, int] | None:
        try:
            return int(self.query_one("#trials", Input).value), int(self.query_one("#trial-tokens", Input).value)
        except ValueError:
            return None

    def accept(self) -> str | None:
        numbers = self._numbers()
        if numbers is None or numbers[0] < 1 or numbers[1] < 1:
            return "Trials and tokens per trial must be positive whole numbers."
        trials, trial_tokens = numbers
        self.app.choices = replace(  # type: ignore[attr-defined]
            self.app.choices,
            goal=self._chosen_goal(),
            trials=trials,
            trial_tokens=trial_tokens,  # type: ignore[attr-defined]
        )
        return None
