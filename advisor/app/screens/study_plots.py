"""The live study's two plots: the running trial's training loss, and learning against general scores with the base
model and full fine-tuning marked (a mixin of advisor.app.screens.study.StudyScreen, which holds the points)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

from advisor.app.screens import LOSS_LINE

if TYPE_CHECKING:
    from tuner.records import Recommendation


class StudyPlots:
    """Draws `curve`, `points` and `marked` into the screen's #curve and #scatter plots (the screen's query_one
    finds them)."""

    curve: list[tuple[int, float]]
    points: dict[str, tuple[float, float]]
    marked: dict[str, tuple[float, float, str]]

    def draw_curve(self, number: int | None) -> None:
        """Trial `number`'s training loss by step; titled and labelled before any trial has trained (None)."""
        plot = self.query_one("#curve", PlotextPlot)
        plot.plt.clear_data()
        plot.plt.title(f"trial {number}: training loss" if number is not None else "training loss: no trial yet")
        plot.plt.xlabel("step")
        if self.curve:
            plot.plt.plot([s for s, _ in self.curve], [v for _, v in self.curve], color=LOSS_LINE)
        plot.refresh()

    def mark_points(self, recommendation: Recommendation) -> None:
        """The base model and full fine-tuning (with `--reference full`) on the scatter beside the trials, as the
        study's own plot has them."""
        from tuner.scoring.plot import BASE_MARKER, FULL_MARKER

        scores = recommendation.scores
        for point in (scores.points if scores else None) or []:
            if point.is_base or point.is_reference:
                marker = BASE_MARKER if point.is_base else FULL_MARKER
                self.marked[point.label] = (point.general, point.learning, marker)
            else:  # a trial, as the study scored it (the pick of a resumed study sent no TrialScored)
                self.points.setdefault(point.label, (point.general, point.learning))
        if self.marked:
            self.draw_scatter()

    def draw_scatter(self) -> None:
        """Learning against general score: the scored trials, then the base model and full fine-tuning once the
        study has them; titled, with its key, before any trial is scored."""
        from tuner.scoring.plot import TRIAL_MARKER

        plot = self.query_one("#scatter", PlotextPlot)
        plot.plt.clear_data()
        plot.plt.title("learning vs general (forgets less ->)")
        if self.points:
            general, learning = zip(*self.points.values(), strict=True)
            plot.plt.scatter(list(general), list(learning), marker=TRIAL_MARKER)
        for general_score, learning_score, marker in self.marked.values():
            plot.plt.scatter([general_score], [learning_score], marker=marker)
        # The key under the axis, where no point hides behind it (plotext's legend sits on the top left, where full
        # fine-tuning, learning more and forgetting more, tends to be).
        key = [f"{TRIAL_MARKER} trials", *(f"{marker} {label}" for label, (_, _, marker) in self.marked.items())]
        plot.plt.xlabel("  ".join(key))
        plot.refresh()
