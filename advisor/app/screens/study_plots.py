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

    def draw_curve(self, number: int) -> None:
        plot = self.query_one("#curve", PlotextPlot)
        plot.plt.clear_data()
        plot.plt.title(f"trial {number}: training loss")
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
        plot = self.query_one("#scatter", PlotextPlot)
        plot.plt.clear_data()
        plot.plt.title("learning vs general (forgets less ->)")
        if self.points:
            plot.plt.scatter([g for g, _ in self.points.values()], [v for _, v in self.points.values()])
        for general, learning, marker in self.marked.values():
            plot.plt.scatter([general], [learning], marker=marker)
        # The marked points' key under the axis, where no point hides behind it (plotext's legend sits on the
        # top left, where full fine-tuning, learning more and forgetting more, tends to be).
        plot.plt.xlabel("  ".join(f"{marker} {label}" for label, (_, _, marker) in self.marked.items()) or None)
        plot.refresh()
