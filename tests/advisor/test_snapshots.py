"""How each screen looks, at 80x24 and 160x48, against a fake tuner (pytest-textual-snapshot)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytest_textual_snapshot")

from advisor.app import AdvisorApp
from tests.advisor.test_app import FakeTuner, settle


def app_for(tiny_model: Path) -> AdvisorApp:
    app = AdvisorApp(runner=FakeTuner(), runs_root=Path("runs"))
    app.choices = app.choices.__class__(model=str(tiny_model), trials=3, study_budget=None)
    return app


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_task_step(snap_compare, tiny_model, size):
    assert snap_compare(app_for(tiny_model), terminal_size=size)


def test_memory_step_with_a_budget(snap_compare, tiny_model):
    async def to_memory(pilot) -> None:
        for _ in range(2):
            await pilot.press("ctrl+n")
            await settle(pilot.app, pilot)
        await pilot.press(*"1GiB")
        await settle(pilot.app, pilot)

    assert snap_compare(app_for(tiny_model), terminal_size=(80, 24), run_before=to_memory)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_finished_study_and_recommendation(snap_compare, tiny_model, size):
    async def to_study(pilot) -> None:
        pilot.app.start_study(pilot.app.study_settings(), Path("runs") / "snapshot")
        await settle(pilot.app, pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.3)  # the footer and the plots redraw after the last message

    assert snap_compare(app_for(tiny_model), terminal_size=size, run_before=to_study)


def test_finished_full_run(snap_compare, tmp_path, monkeypatch):
    from advisor.screens.train import TrainScreen
    from tests.advisor.test_app import FakeTrainer, finished_study

    monkeypatch.chdir(tmp_path)  # the screen shows the run directory: a relative one looks the same every time
    run_dir = finished_study(Path("run"))
    app = AdvisorApp(runner=FakeTuner(), trainer=FakeTrainer(step_pause=0.0), runs_root=Path("runs"))

    async def train(pilot) -> None:
        pilot.app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(pilot.app, pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=train)


def test_export_dialog(snap_compare, tmp_path, monkeypatch):
    from advisor.screens.export import ExportScreen
    from advisor.screens.recommendation import RecommendationScreen
    from tests.advisor.test_app import finished_study, recommendation
    from tuner.records import Recommendation

    monkeypatch.chdir(tmp_path)
    run_dir = finished_study(Path("run"))
    app = AdvisorApp(runner=FakeTuner(), runs_root=Path("runs"))

    async def export(pilot) -> None:
        pilot.app.push_screen(RecommendationScreen(Recommendation.from_json({**recommendation(run_dir), "trial": 0})))
        pilot.app.push_screen(ExportScreen(run_dir))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=export)
