"""Learning against forgetting, as in Biderman et al. 2024 (Figure 1): the Pareto front, a terminal plot and a PNG.

x is the general-knowledge score (mean accuracy on HellaSwag, WinoGrande and ARC-Challenge: higher means the
adapter forgot less), y the learning score (GSM8K accuracy, HumanEval pass@1...). Pure: optuna, plotext and
matplotlib are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.records.scores import ScorePoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GENERAL_AXIS_LABEL = "general accuracy (mean of HellaSwag, WinoGrande, ARC-C); higher = forgets less"
# The x-axis name and its shorter forms for narrow terminals, longest first.
GENERAL_AXIS_LABELS = (
    GENERAL_AXIS_LABEL,
    "general accuracy (mean of HellaSwag, WinoGrande, ARC-C)",
    "general accuracy (HellaSwag, WinoGrande, ARC-C)",
    "general accuracy",
    "general",
)
BASE_MARKER = "★"
FRONT_MARKER = "◆"
TRIAL_MARKER = "•"
FULL_MARKER = "■"
TERMINAL_KEYS = (
    f"{BASE_MARKER} base model   {FRONT_MARKER} Pareto front   {TRIAL_MARKER} other trials",
    f"{BASE_MARKER} base {FRONT_MARKER} front {TRIAL_MARKER} trials",
)
# The keys when full fine-tuning is on the plot too, longest first.
FULL_TERMINAL_KEYS = (
    f"{BASE_MARKER} base model   {FRONT_MARKER} Pareto front   {TRIAL_MARKER} other trials   "
    f"{FULL_MARKER} full fine-tuning",
    f"{BASE_MARKER} base {FRONT_MARKER} front {TRIAL_MARKER} trials {FULL_MARKER} full fine-tuning",
    f"{BASE_MARKER} base {FRONT_MARKER} front {TRIAL_MARKER} trials {FULL_MARKER} full",
)
# Terminal colours (256-colour codes): red+ base, blue+ front, grey trials, green+ full fine-tuning.
BASE_COLOR, FRONT_COLOR, TRIAL_COLOR, FULL_COLOR = 9, 12, 8, 10
MIN_TERMINAL_WIDTH, MIN_TERMINAL_HEIGHT = 30, 12


def pareto_front(points: Sequence[ScorePoint]) -> list[ScorePoint]:
    """The trials' points (neither the base model nor full fine-tuning) that no other trial beats on both scores,
    ordered by general score.

    Optuna decides dominance (``study.best_trials`` of a two-objective study); equal optimal points all stay.
    """
    import optuna

    trials = [point for point in points if not (point.is_base or point.is_reference)]
    if not trials:
        return []
    previous_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=["maximize", "maximize"])
        for index, point in enumerate(trials):
            study.add_trial(
                optuna.trial.create_trial(values=[point.general, point.learning], user_attrs={"point_index": index})
            )
        front = [trials[trial.user_attrs["point_index"]] for trial in study.best_trials]
    finally:
        optuna.logging.set_verbosity(previous_verbosity)
    return sorted(front, key=lambda point: point.general)


def _padded(values: Sequence[float]) -> tuple[float, float]:
    """Axis limits around the values with a margin, so no point sits on the frame."""
    low, high = min(values), max(values)
    margin = max(0.01, 0.08 * (high - low))
    return max(0.0, low - margin), min(1.0, high + margin)


def terminal_plot(
    points: Sequence[ScorePoint],
    *,
    learning_name: str,
    width: int = 72,
    height: int = 20,
    color: bool = True,
    title: str = "Learning vs forgetting",
) -> str:
    """The points as a text scatter plot of `width` x `height` characters, returned rather than printed.

    The base model, the Pareto front, the other trials and full fine-tuning are told apart by marker and named in
    the legend; `color=False` gives plain text without escape codes.
    """
    import plotext as plt

    if width < MIN_TERMINAL_WIDTH or height < MIN_TERMINAL_HEIGHT:
        raise ValueError(f"a plot needs at least {MIN_TERMINAL_WIDTH}x{MIN_TERMINAL_HEIGHT}, got {width}x{height}")
    front = pareto_front(points)
    full = [p for p in points if p.is_reference]
    groups = (
        ([p for p in points if not (p.is_base or p.is_reference) and p not in front], TRIAL_MARKER, TRIAL_COLOR),
        (front, FRONT_MARKER, FRONT_COLOR),
        (full, FULL_MARKER, FULL_COLOR),
        ([p for p in points if p.is_base], BASE_MARKER, BASE_COLOR),
    )
    plt.clear_figure()
    plt.limitsize(False, False)  # the size asked for, whatever the terminal (stdout may be a pipe)
    plt.plotsize(width, height - 2)  # two rows are ours: the y-axis name above, the key below
    plt.theme("clear")
    for group, marker, color_code in groups:
        if group:
            xs, ys = [p.general for p in group], [p.learning for p in group]
            plt.scatter(xs, ys, marker=marker, color=color_code if color else None)
    if points:
        plt.xlim(*_padded([p.general for p in points]))
        plt.ylim(*_padded([p.learning for p in points]))
    plt.title(fit_text(title, width - 2))
    plt.xlabel(next(text for text in GENERAL_AXIS_LABELS if len(text) + 8 <= width))  # plotext drops one too wide
    drawn = plt.build()
    plt.clear_figure()
    rows = [
        fit_text(f"↑ {learning_name}", width),
        drawn if color else plt.uncolorize(drawn),
        next(key for key in (FULL_TERMINAL_KEYS if full else TERMINAL_KEYS) if len(key) <= width) if points else "",
    ]
    return "\n".join(row.rstrip("\n") for row in rows)


def fit_text(text: str, width: int) -> str:
    """The text cut to `width` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def write_png(points: Sequence[ScorePoint], path: Path, *, learning_name: str, title: str) -> Path:
    """Draw the points with matplotlib (Agg, no display needed) and save them as a PNG at ``path``; missing parent
    directories are created."""
    figure = learning_figure(points, learning_name=learning_name, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def learning_figure(points: Sequence[ScorePoint], *, learning_name: str, title: str) -> Figure:
    """The points as a matplotlib figure of its own (Agg: no pyplot, no display): the base model a black star,
    trials labelled dots, the Pareto front a connected line and full fine-tuning a labelled square, as in the
    paper's figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    base = [point for point in points if point.is_base]
    full = [point for point in points if point.is_reference]
    front = pareto_front(points)
    others = [point for point in points if not (point.is_base or point.is_reference) and point not in front]

    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)  # a figure of its own: no pyplot, no global state, no display
    axes = figure.add_subplot()

    def xy(group: Sequence[ScorePoint]) -> tuple[list[float], list[float]]:
        return [point.general for point in group], [point.learning for point in group]

    if others:
        axes.scatter(*xy(others), color="tab:gray", label="other trials", zorder=2)
    if front:
        axes.plot(*xy(front), "-o", color="tab:blue", label="Pareto front", zorder=3)
    if full:
        axes.scatter(*xy(full), marker="s", s=80, color="tab:red", label="full fine-tuning", zorder=4)
    if base:
        axes.scatter(*xy(base), marker="*", s=220, color="black", label="base model", zorder=5)
    for point in points:
        axes.annotate(
            point.label,
            (point.general, point.learning),
            xytext=(6, -12) if point.is_base else (5, 5),  # below the base, above trials: a trial on it stays legible
            textcoords="offset points",
            fontsize=8,
            fontweight="bold" if point.is_base or point.is_reference else "normal",
        )
    axes.set_xlabel(GENERAL_AXIS_LABEL)
    axes.set_ylabel(f"{learning_name} (higher = learns more)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.margins(0.1)  # room for the labels of the outermost points
    if points:
        axes.legend(loc="best")
    return figure
