"""How each screen looks at 60x20, 80x24 and 160x48, against a fake tuner and trainer (pytest-textual-snapshot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

pytest.importorskip("pytest_textual_snapshot")

from advisor.app.app import AdvisorApp
from tests.advisor.app.test_app import FakeTrainer, FakeTuner, finished_study, recommendation, settle

SIZES = [(60, 20), (80, 24), (160, 48)]


def app_for(model: Path, study_budget: str | None = None) -> AdvisorApp:
    app = AdvisorApp(runner=FakeTuner(), trainer=FakeTrainer(), runs_root=Path("runs"))
    app.choices = app.choices.__class__(model=str(model), trials=3, study_budget=study_budget)
    return app


@pytest.fixture
def tiny(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny model under a relative name: the screens show it, and a temporary path differs every run."""
    monkeypatch.chdir(tmp_path)
    Path("tiny").symlink_to(tiny_model)
    return Path("tiny")


async def until(pilot, condition, seconds: float = 10.0) -> None:
    """Let the app run until `condition()` holds (at most `seconds`), then go on either way: the snapshot shows why."""
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)


async def steps_forward(pilot, steps: int) -> None:
    for _ in range(steps):
        await pilot.press("ctrl+n")
        await settle(pilot.app, pilot)
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
def test_task_step(snap_compare, tiny, size):
    assert snap_compare(app_for(tiny), terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_task_step_with_own_data(snap_compare, tiny, size):
    async def own_data(pilot) -> None:
        await pilot.press("down", "down", "enter")
        await pilot.pause(0.2)

    assert snap_compare(app_for(tiny), terminal_size=size, run_before=own_data)


@pytest.mark.parametrize("size", SIZES)
def test_model_step(snap_compare, tiny, size):
    async def to_model(pilot) -> None:
        await steps_forward(pilot, 1)
        await settle(pilot.app, pilot)  # the model's check reports from its worker: wait for it under load too
        screen = pilot.app.screen
        # Its report reaches the screen through call_from_thread, later still under load.
        await until(pilot, lambda: screen.checking is None and screen.checked is not None)
        for field in screen.query(Input):
            field.cursor_blink = False  # the focused field's cursor shown steadily, not caught mid-blink
        await pilot.pause(0.3)

    assert snap_compare(app_for(tiny), terminal_size=size, run_before=to_model)


@pytest.mark.parametrize("size", SIZES)
def test_memory_step_with_a_budget(snap_compare, tiny, size):
    async def to_memory(pilot) -> None:
        await steps_forward(pilot, 2)
        await pilot.press(*"1GiB")
        await settle(pilot.app, pilot)

    assert snap_compare(app_for(tiny), terminal_size=size, run_before=to_memory)


@pytest.mark.parametrize("size", SIZES)
def test_goal_and_time_step(snap_compare, tiny, size):
    async def to_goal(pilot) -> None:
        await steps_forward(pilot, 3)

    assert snap_compare(app_for(tiny, "10min"), terminal_size=size, run_before=to_goal)


@pytest.mark.parametrize("size", SIZES)
def test_finished_study(snap_compare, tiny, size):
    async def to_study(pilot) -> None:
        pilot.app.start_study(pilot.app.study_settings(), Path("runs") / "snapshot")
        await settle(pilot.app, pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.3)  # the footer and the plots redraw after the last message

    assert snap_compare(app_for(tiny), terminal_size=size, run_before=to_study)


@pytest.mark.parametrize("size", SIZES)
def test_recommendation(snap_compare, tmp_path, monkeypatch, size):
    from advisor.app.screens.recommendation import RecommendationScreen
    from tuner.records import Recommendation

    monkeypatch.chdir(tmp_path)  # screens show the run directory: a relative one looks the same every time
    run_dir = finished_study(Path("run"))

    async def show(pilot) -> None:
        pilot.app.push_screen(RecommendationScreen(Recommendation.from_json({**recommendation(run_dir), "trial": 0})))
        await pilot.pause(0.3)

    assert snap_compare(app_for(Path("tiny")), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_full_run_before_start(snap_compare, tmp_path, monkeypatch, size):
    from advisor.app.screens.train import TrainScreen

    monkeypatch.chdir(tmp_path)
    run_dir = finished_study(Path("run"))

    async def show(pilot) -> None:
        pilot.app.push_screen(TrainScreen(run_dir))
        await pilot.pause(0.3)

    assert snap_compare(app_for(Path("tiny")), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_finished_full_run(snap_compare, tmp_path, monkeypatch, size):
    from advisor.app.screens.train import TrainScreen

    monkeypatch.chdir(tmp_path)
    run_dir = finished_study(Path("run"))

    async def train(pilot) -> None:
        pilot.app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(pilot.app, pilot)
        screen = pilot.app.screen
        # The run's end reaches the screen as a message after the worker is done: later still under load.
        await until(pilot, lambda: not screen.running and screen.report is not None)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.3)

    assert snap_compare(app_for(Path("tiny")), terminal_size=size, run_before=train)


@pytest.mark.parametrize("size", SIZES)
def test_export_dialog(snap_compare, tmp_path, monkeypatch, size):
    from advisor.app.screens.export import ExportScreen
    from advisor.app.screens.recommendation import RecommendationScreen
    from tuner.records import Recommendation

    monkeypatch.chdir(tmp_path)
    run_dir = finished_study(Path("run"))

    async def export(pilot) -> None:
        pilot.app.push_screen(RecommendationScreen(Recommendation.from_json({**recommendation(run_dir), "trial": 0})))
        pilot.app.push_screen(ExportScreen(run_dir))
        await pilot.pause(0.3)

    assert snap_compare(app_for(Path("tiny")), terminal_size=size, run_before=export)
