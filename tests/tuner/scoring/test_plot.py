"""The learning-forgetting plot: Pareto front by Optuna, the terminal plot's text and the PNG file."""

from __future__ import annotations

import math
import struct

import optuna
import pytest

from tuner.records import ScorePoint
from tuner.scoring.plot import FULL_MARKER, learning_figure, pareto_front, terminal_plot, write_png

BASE = ScorePoint("base", 0.70, 0.05, is_base=True)  # the best general score: on the front if it counted
TABLE = [
    BASE,
    ScorePoint("trial 1", 0.50, 0.40),
    ScorePoint("trial 2", 0.60, 0.30),
    ScorePoint("trial 2 again", 0.60, 0.30),  # a tie: both optimal, both stay
    ScorePoint("trial 3", 0.55, 0.25),  # beaten by trial 2 on both
    ScorePoint("trial 4", 0.65, 0.10),
    ScorePoint("trial 5", 0.65, 0.08),  # as general as trial 4 but learned less
]
FULL = ScorePoint("full fine-tuning", 0.68, 0.45, is_reference=True)  # beats every trial: on the front if it counted


def test_pareto_front_keeps_the_unbeaten_trials_ordered_by_general_score():
    front = pareto_front(TABLE)
    assert [point.label for point in front] == ["trial 1", "trial 2", "trial 2 again", "trial 4"]
    assert [point.general for point in front] == [0.50, 0.60, 0.60, 0.65]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], []),
        ([BASE], []),
        ([BASE, ScorePoint("only", 0.1, 0.1)], ["only"]),
        ([ScorePoint("low", 0.2, 0.2), ScorePoint("high", 0.3, 0.3)], ["high"]),
    ],
)
def test_pareto_front_small_tables(points, expected):
    assert [point.label for point in pareto_front(points)] == expected


def test_pareto_front_leaves_optuna_logging_as_it_found_it():
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        pareto_front(TABLE)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("general", "learning", "offending"),
    [(math.nan, 0.5, "nan"), (0.5, 1.5, "1.5"), (-0.1, 0.5, "-0.1"), (0.5, math.inf, "inf")],
)
def test_score_point_rejects_scores_that_are_not_accuracies(general, learning, offending):
    with pytest.raises(ValueError, match=f"got {offending}"):
        ScorePoint("trial 0", general, learning)


def test_plain_terminal_plot_has_title_axis_names_legend_and_size(capsys):
    text = terminal_plot(TABLE, learning_name="GSM8K accuracy", width=72, height=20, color=False, title="Math run")
    lines = text.splitlines()
    assert "\x1b" not in text
    assert len(lines) == 20 and all(len(line.rstrip()) <= 72 for line in lines)
    assert lines[0] == "↑ GSM8K accuracy" and lines[1].strip() == "Math run"
    assert "GSM8K accuracy" in text and "general accuracy (mean of HellaSwag, WinoGrande, ARC-C)" in text
    for legend in ("base", "Pareto front", "other trials"):
        assert legend in text
    assert text.count("★") == 2  # the base point and its legend entry
    assert capsys.readouterr().out == ""  # returns the plot, prints nothing


def test_terminal_plot_is_as_large_as_asked_even_beyond_a_narrow_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "10")
    lines = terminal_plot(TABLE, learning_name="GSM8K accuracy", width=100, height=30, color=False).splitlines()
    assert len(lines) == 30 and max(len(line.rstrip()) for line in lines) > 90


@pytest.mark.parametrize(("width", "height"), [(30, 12), (50, 15)])
def test_small_terminal_plot_fits_its_width(width, height):
    text = terminal_plot(TABLE, learning_name="HumanEval pass@1", width=width, height=height, color=False)
    assert all(len(line.rstrip()) <= width for line in text.splitlines())
    assert "HumanEval pass@1" in text and "general" in text


def test_coloured_terminal_plot_uses_escape_codes():
    assert "\x1b[" in terminal_plot(TABLE, learning_name="GSM8K accuracy")


def test_terminal_plot_refuses_a_size_too_small_to_read():
    with pytest.raises(ValueError, match="got 20x20"):
        terminal_plot(TABLE, learning_name="GSM8K accuracy", width=20)


def test_terminal_plot_of_no_points_draws_empty_axes():
    text = terminal_plot([], learning_name="GSM8K accuracy", color=False)
    assert "GSM8K accuracy" in text and "★" not in text and "◆" not in text


def test_write_png_creates_missing_folders_and_writes_a_png(tmp_path):
    path = tmp_path / "plots" / "math" / "learning_vs_forgetting.png"
    written = write_png(TABLE, path, learning_name="GSM8K accuracy", title="Math run")
    assert written == path
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (960, 720)  # 8 x 6 inches at 120 dpi


def test_full_fine_tuning_is_its_own_labelled_point_and_never_on_loras_front():
    assert pareto_front([*TABLE, FULL]) == pareto_front(TABLE)
    text = terminal_plot([*TABLE, FULL], learning_name="GSM8K accuracy", color=False)
    assert text.count(FULL_MARKER) == 2 and "full fine-tuning" in text  # the point and its legend entry
    assert FULL_MARKER not in terminal_plot(TABLE, learning_name="GSM8K accuracy", color=False)
    narrow = terminal_plot([*TABLE, FULL], learning_name="GSM8K accuracy", width=30, height=12, color=False)
    assert all(len(line.rstrip()) <= 30 for line in narrow.splitlines()) and narrow.count(FULL_MARKER) == 2

    axes = learning_figure([*TABLE, FULL], learning_name="GSM8K accuracy", title="Math run").axes[0]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "other trials",
        "Pareto front",
        "full fine-tuning",
        "base model",
    ]
    drawn = {text.get_text(): text.xy for text in axes.texts}  # each point's label, where the point is
    assert drawn["full fine-tuning"] == (0.68, 0.45) and drawn["base"] == (0.70, 0.05)
