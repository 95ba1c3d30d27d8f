"""The app watching a study other processes run through a shared storage (`advisor --storage URL --study NAME`):
a SQLite study written by hand between the app's looks, and the command's refusals before the app starts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from textual.widgets import DataTable, Static

from advisor import cli
from advisor.app.app import AdvisorApp
from advisor.app.screens import study as study_screen
from advisor.app.screens.recommendation import RecommendationScreen
from advisor.app.screens.study import StudyScreen
from tests.tuner.study.test_study_watch import end_trial, finish_study, start_study, start_trial


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture(autouse=True)
def _quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study_screen, "WATCH_SECONDS", 0.05)


async def until(pilot: Any, condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let the app run until `condition` holds (the watch looks every few hundredths of a second)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the app did not get there in time"
        await pilot.pause(0.05)


def states(app: AdvisorApp) -> dict[str, str]:
    table = app.screen.query_one("#trials", DataTable)
    return {str(key.value): str(table.get_cell(key, "state")) for key in table.rows}


def status(app: AdvisorApp) -> str:
    return str(app.screen.query_one("#status", Static).render())


async def test_the_app_fills_as_the_workers_run_the_study_and_ends_with_its_recommendation(url: str, tmp_path: Path):
    study = start_study(url)
    end_trial(study, start_trial(study, rank=16), 1.3)  # ended before the app looked
    second = start_trial(study, rank=256)
    app = AdvisorApp(runs_root=tmp_path / "runs", watch=(url, "demo"))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, StudyScreen) and len(states(app)) == 2)
        assert states(app) == {"0": "complete", "1": "running"}
        assert app.screen.query_one("#trials", DataTable).get_cell("0", "loss") == "1.3000"
        # the status line refreshes once a second: wait for the whole of it, not its first word
        await until(pilot, lambda: "1 of 3 trials ended, 1 running" in status(app))
        assert "watching study 'demo' at sqlite:///" in status(app)

        await pilot.press("p")  # the workers are not this app's: no pause, no resume
        screen = app.screen
        assert isinstance(screen, StudyScreen)
        assert not screen.pause_requested.is_set() and screen.check_action("pause", ()) is False
        assert screen.check_action("resume", ()) is False and screen.check_action("stop_watching", ()) is True
        shown = {binding.binding.description for binding in screen.active_bindings.values()}
        assert "Stop watching" in shown and not shown & {"Pause after trial", "Stop now", "Resume"}

        end_trial(study, second, 1.5, pruned=True)  # a worker elsewhere goes on
        third = start_trial(study, rank=16)
        await until(pilot, lambda: states(app) == {"0": "complete", "1": "pruned", "2": "running"})
        assert screen.curve_trial == 1 and screen.curve == [(1, 2.4), (2, 2.2)]  # the pruned trial's curve

        end_trial(study, third, 1.1)
        finish_study(study, tmp_path / "elsewhere")
        await until(pilot, lambda: "study finished" in status(app))
        assert states(app) == {"0": "complete", "1": "pruned", "2": "complete"}
        run_dir = tmp_path / "runs" / "demo"
        written = json.loads((run_dir / "recommendation.json").read_text(encoding="utf-8"))
        assert written["trial"] == 2 and written["run_dir"] == str(run_dir)  # this machine's copy
        assert sorted(path.name for path in (run_dir / "trials").iterdir()) == [
            "trial_0000.json",
            "trial_0001.json",
            "trial_0002.json",
        ]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)
        assert app.screen.recommendation.run_dir == str(run_dir)


async def test_a_study_that_finished_before_the_app_looked_opens_with_its_trials(url: str, tmp_path: Path):
    study = start_study(url)
    for target in (1.3, 1.1):
        end_trial(study, start_trial(study), target)
    finish_study(study, tmp_path / "elsewhere")
    app = AdvisorApp(runs_root=tmp_path / "runs", watch=(url, "demo"))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, StudyScreen) and "study finished" in status(app))
        assert states(app) == {"0": "complete", "1": "complete"}
        assert app.screen.recommendation.run_dir == str(tmp_path / "runs" / "demo")


async def test_s_stops_watching_and_leaves_the_study_to_its_workers(url: str, tmp_path: Path):
    study = start_study(url)
    start_trial(study)
    app = AdvisorApp(runs_root=tmp_path / "runs", watch=(url, "demo"))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, StudyScreen) and states(app) == {"0": "running"})
        await pilot.press("s")
        await until(pilot, lambda: "stopped watching" in status(app))
        await app.workers.wait_for_complete()
        assert states(app) == {"0": "running"}  # still running, on its worker
        assert app.screen.check_action("resume", ()) is False and app.screen.check_action("stop_watching", ()) is False


async def test_a_study_the_app_cannot_open_is_said_and_the_questions_start(tmp_path: Path, url: str):
    from advisor.app.screens.task import TaskScreen

    start_study(url)
    app = AdvisorApp(runs_root=tmp_path / "runs", watch=(url, "nope"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        assert any("no study 'nope'" in str(note.message) for note in app._notifications)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as leaving:
        code = int(leaving.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--storage", "sqlite:///x.db"], "--storage URL and --study NAME go together"),
        (["--study", "demo"], "--storage URL and --study NAME go together"),
        (["--storage", "sqlite:///x.db", "--study", "demo", "--run", "runs/math"], "give them alone"),
    ],
)
def test_the_watch_options_go_together_and_alone(capsys, argv: list[str], said: str):
    code, err = run_cli(capsys, *argv)
    assert code == 2 and said in err and err.startswith("advisor: error: ") and len(err.splitlines()) == 1


def test_an_unknown_study_or_storage_is_one_line_before_the_app_starts(capsys, url: str, tmp_path: Path):
    start_study(url)
    code, err = run_cli(capsys, "--storage", url, "--study", "nope")
    assert (code, err) == (2, f"advisor: error: no study 'nope' in {url}: it holds 'demo'\n")
    code, err = run_cli(capsys, "--storage", f"sqlite:///{tmp_path / 'no' / 'such.db'}", "--study", "demo")
    assert code == 2 and err.startswith("advisor: error: no study storage at ") and len(err.splitlines()) == 1
    assert not (tmp_path / "no").exists()
