"""Issue 34's dead ends, each with its way on inside the app: a failed study goes back to the steps, a study whose
directory holds another goes to a fresh one, a full run over another gets Replace, and the data's own limits are
said where they can be changed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from textual.widgets import Input, Static

from advisor.app.app import AdvisorApp
from advisor.app.screens.goal import GoalScreen
from advisor.app.screens.study import StudyScreen
from advisor.app.screens.train import TrainScreen
from tests.advisor.app.test_app import FakeTrainer, FakeTuner, finished_study, settle
from tuner.errors import AdvisorError
from tuner.fullrun.checkpoints import OTHER_OUT
from tuner.records import DataSize

TOO_SMALL = (
    "small.jsonl is too small: 60 usable examples give 0 training rows of 512 tokens after a held-out set of 8; one "
    "batch needs 4 (lower --batch-size or --seq-len, or give more data)"
)


def tiny_app(tiny_model: Path, runs_root: Path, runner: Any = None) -> AdvisorApp:
    """The app on the tiny model, its studies run by `runner` (a fake tuner by default)."""
    app = AdvisorApp(runner=runner or FakeTuner(), runs_root=runs_root)
    app.choices = app.choices.__class__(model=str(tiny_model))
    return app


async def test_a_study_that_fails_goes_back_to_the_steps_with_esc(tiny_model: Path, tmp_path: Path):
    def failing(*args, **kwargs):
        raise AdvisorError(TOO_SMALL)

    app = tiny_app(tiny_model, tmp_path, failing)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(GoalScreen())
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, StudyScreen)
        status = str(app.screen.query_one("#status", Static).render())
        assert "(give more data, or a larger study budget per trial)" in status and "--batch-size" not in status
        assert "Esc goes back to the steps" in status
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, GoalScreen)


async def test_a_study_whose_directory_holds_another_goes_to_a_fresh_one(tiny_model: Path, tmp_path: Path):
    tuner = FakeTuner()
    app = tiny_app(tiny_model, tmp_path, tuner)
    other = replace(app.study_settings(), goal=1.0)
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "study.db").write_bytes(b"")
    (tmp_path / "math" / "settings.json").write_text(json.dumps(other.to_json()))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(GoalScreen())
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert tuner.calls == [tmp_path / "math-2"]


async def test_a_full_run_over_another_offers_replace_in_app_words(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    (run_dir / "train").mkdir()
    (run_dir / "train" / "train_settings.json").write_text(json.dumps({"learning_rate": 0.5, "rank": 4, "epochs": 1}))
    message = f"{run_dir / 'train'} holds a training run with other settings (rank differ); {OTHER_OUT}"
    app = AdvisorApp(runner=FakeTuner(), trainer=FakeTrainer(error=message), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        status = str(app.screen.query_one("#status", Static).render())
        assert "Replace (ctrl+r) moves it aside" in status and "--out" not in status
        assert app.screen.query_one("#replace").display and app.screen.check_action("replace", ())
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert (run_dir / "train-replaced-1" / "train_settings.json").is_file()


async def test_too_few_training_examples_for_one_batch_are_said_as_typed(tmp_path: Path):
    run_dir = finished_study(tmp_path / "run")
    app = AdvisorApp(runner=FakeTuner(), trainer=FakeTrainer(), runs_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TrainScreen(run_dir))
        await pilot.pause()
        screen = app.screen
        screen.recommendation = replace(screen.recommendation, data=DataSize(120, 24_000, 200.0))
        screen.query_one("#examples", Input).value = "1"
        await pilot.pause()
        said = "Training examples: at least 2 for one batch of 2 rows of 64 tokens (empty for all); got 1"
        assert said in str(screen.query_one("#form-error", Static).render())


def test_the_datas_message_for_too_few_examples_asked_names_them(tiny_model: Path, data_dir: Path):
    from tuner.data.prepare import prepare_study_data
    from tuner.models.load import load_tokenizer, resolve_model
    from tuner.settings import DataSettings, TrainBudget

    packing = TrainBudget(train_tokens=4096, batch_size=4, seq_len=128).packing()
    tokenizer = load_tokenizer(resolve_model(str(tiny_model)))
    with pytest.raises(AdvisorError) as raised:
        prepare_study_data(DataSettings("math"), packing, tokenizer, data_dir, train_examples=1)
    message = str(raised.value)
    assert message.startswith("1 training example give 1 training row of 128 tokens; one batch needs 4: train on")
    assert "--batch-size" not in message


async def test_the_model_steps_error_is_said_once_and_goes_when_the_field_changes(tiny_model: Path, tmp_path: Path):
    from advisor.app.screens.model import ModelScreen

    app = tiny_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ModelScreen())
        await settle(app, pilot)
        screen = app.screen
        assert "M parameters." in str(screen.query_one("#advice", Static).render())
        field = screen.query_one("#model", Input)
        field.value = str(tmp_path / "no-such-model")
        await pilot.pause()  # the advice no longer gives the checked model's size for this one
        assert "M parameters." not in str(screen.query_one("#advice", Static).render())
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        error = str(screen.query_one("#error", Static).render())
        assert "cannot be used (the reason is above)" in error and "no-such-model" not in error
        assert "no-such-model" in str(screen.query_one("#model-info", Static).render())
        field.value = str(tiny_model)
        await pilot.pause()
        assert str(screen.query_one("#error", Static).render()).strip() == ""
        await pilot.press("enter")
        await settle(app, pilot)
        assert "M parameters." in str(screen.query_one("#advice", Static).render())


def test_a_reopened_stopped_study_says_what_its_directory_holds(tmp_path: Path):
    from advisor.app.app import reopen_summary
    from tuner.settings import DataSettings, StudySettings, TrainBudget

    settings = StudySettings(model="tiny", data=DataSettings("math"), trials=8, budget=TrainBudget(4096))
    (tmp_path / "trials").mkdir()
    for number in range(3):
        (tmp_path / "trials" / f"trial_{number:04d}.json").write_text("{}")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train_settings.json").write_text("{}")
    said, finished = reopen_summary(tmp_path, settings)
    assert not finished and "(8 trials, trials of 4,096 tokens): stopped after 3 trials." in said
    assert f"A full run was stopped in {tmp_path / 'train'}: it resumes from its last checkpoint." in said
    assert said.endswith("Continue it?") and "recommendation" not in said


async def test_a_memory_budget_above_the_machines_ram_is_said(tiny_model: Path, tmp_path: Path):
    from advisor.app.screens.memory import MemoryScreen
    from tuner.memory.sizes import machine_memory

    app = tiny_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(MemoryScreen())
        await settle(app, pilot)
        app.screen.query_one("#budget", Input).value = f"{(2 * machine_memory()) >> 30}GiB"
        await settle(app, pilot)
        assert "of RAM: a budget above it limits nothing here" in str(app.screen.query_one("#estimate").render())
