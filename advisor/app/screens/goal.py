"""Step 4: the goal (learn most to forget least) and the study's budget in time or training tokens, with what it
buys on this machine."""

from __future__ import annotations

from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, RadioButton, RadioSet, Static

from advisor.app.advice import GOALS, budget_estimate, goal_advice
from advisor.app.screens.step import StepScreen
from tuner.settings import TrainBudget
from tuner.study.budget import StudyBudget


class GoalScreen(StepScreen):
    step_title = "4/4  Learn most or forget least, and how long may the study take?"

    def compose_step(self) -> ComposeResult:
        choices = self.advisor_app.choices
        with RadioSet(id="goal"):
            for goal, label in GOALS.items():
                yield RadioButton(f"{label} ({goal:g})", value=goal == choices.goal, name=str(goal))
        with Horizontal(id="budget-row"):
            study_budget = Input(choices.study_budget or "", id="study-budget", placeholder="10min")
            study_budget.border_title = "Study budget (10min, 2h, 200k)"
            yield study_budget
            trial_tokens = Input(str(choices.trial_tokens), id="trial-tokens", type="integer")
            trial_tokens.border_title = "Tokens per trial"
            yield trial_tokens
        yield Static("", id="duration")

    def on_mount(self) -> None:
        self.show_duration()

    def _chosen_goal(self) -> float:
        pressed = self.query_one("#goal", RadioSet).pressed_button
        return float(pressed.name) if pressed is not None and pressed.name else 0.5

    def advice_text(self) -> str:
        return goal_advice(self._chosen_goal() if self.is_mounted else self.advisor_app.choices.goal)

    @on(RadioSet.Changed, "#goal")
    def goal_changed(self) -> None:
        self.show_advice()

    @on(Input.Changed)
    def show_duration(self) -> None:
        chosen = self._chosen()
        # What is wrong is said once, where Next would say it; the estimate is shown only for a budget that runs.
        self.query_one("#duration", Static).update("" if isinstance(chosen, str) else budget_estimate(*chosen))
        self.show_error(chosen if isinstance(chosen, str) else "")

    def _chosen(self) -> tuple[StudyBudget, int] | str:
        """The budget and the trial's tokens, or what is wrong with them."""
        text = self.query_one("#study-budget", Input).value.strip()
        if not text:
            return "Give the study a budget: a time (10min, 2h) or training tokens (200k)."
        try:
            spend = StudyBudget.parse(text, "the study budget")
            trial_tokens = int(self.query_one("#trial-tokens", Input).value)
            TrainBudget(train_tokens=trial_tokens)  # at least one optimizer step
        except ValueError as error:
            message = str(error)
            if message.startswith("invalid literal"):
                return "Training tokens per trial must be a whole number."
            return message[0].upper() + message[1:] + "."
        if spend.tokens is not None and spend.tokens < trial_tokens:
            return f"A budget of {spend.tokens:,} tokens is below one trial ({trial_tokens:,} tokens)."
        return spend, trial_tokens

    def keep_typed(self) -> None:
        """The fields, and the goal chosen, kept for the next visit (Back loses nothing)."""
        super().keep_typed()
        self.advisor_app.choices = replace(self.advisor_app.choices, goal=self._chosen_goal())

    def accept(self) -> str | None:
        chosen = self._chosen()
        if isinstance(chosen, str):
            return chosen
        _, trial_tokens = chosen
        self.advisor_app.choices = replace(
            self.advisor_app.choices,
            goal=self._chosen_goal(),
            study_budget=self.query_one("#study-budget", Input).value.strip(),
            trial_tokens=trial_tokens,
        )
        return None
