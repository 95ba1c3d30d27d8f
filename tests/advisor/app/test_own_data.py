"""The own-data step driven by a Pilot: the format found, the trained text, the column fields a file's columns call
for, the data's errors by line, and the format and regime on their way to the study's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from textual.content import Content
from textual.widgets import Button, Input, Select, Static

from advisor.app.app import AdvisorApp
from advisor.app.screens.model import ModelScreen
from advisor.app.screens.task import TRAINED_STYLE, TaskScreen
from tests.advisor.app.test_app import FakeTuner, settle


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def conversation(number: int, answer: str) -> dict[str, Any]:
    turns = [{"role": "user", "content": f"What is {number} + {number}?"}, {"role": "assistant", "content": answer}]
    return {"messages": turns}


def own_data_app(model: Path, tmp_path: Path) -> AdvisorApp:
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(model=str(model))
    return app


async def preview(app: AdvisorApp, pilot: Any, data: Path | None = None) -> Content:
    """Give the data (when given), press Preview and wait for it; what the preview shows."""
    if data is not None:
        app.screen.query_one("#data", Input).value = str(data)
    app.screen.query_one("#preview", Button).press()  # pressed wherever the step has scrolled
    await settle(app, pilot)
    shown = app.screen.query_one("#preview-text", Static).render()
    assert isinstance(shown, Content)
    return shown


def trained_spans(shown: Content) -> list[str]:
    """The examples' text in the trained style (not the legend that names the style)."""
    first = shown.plain.index("\n1) ")
    spans = [span for span in shown.spans if span.style == TRAINED_STYLE and span.start > first]
    return [shown.plain[span.start : span.end] for span in spans]


async def test_a_messages_file_previews_its_format_counts_and_trained_text(tiny_model: Path, tmp_path: Path):
    answers = [f"It is {2 * n}, and [b]this[/b] is not markup." for n in range(4)]
    long_answer = "A long answer. " * 200  # clipped: the step stays usable at 80x24
    data = write_jsonl(tmp_path / "chat.jsonl", [conversation(n, a) for n, a in enumerate([*answers, long_answer])])
    app = own_data_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")  # my own data
        assert not app.screen.query_one("#column-fields").display  # conversations need no column names
        shown = await preview(app, pilot, data)
        assert shown.plain.startswith("5 examples of conversations (a messages list of role and content)")
        assert "instruction tuning: loss on the assistant turns only" in shown.plain
        assert " tokens trained" in shown.plain and "with the model's chat template" in shown.plain
        trained = trained_spans(shown)
        assert trained and all(span.startswith(("It is", "A long answer.")) for span in trained)
        assert any("[b]this[/b] is not markup." in span for span in trained)  # the data's brackets, as written
        assert "What is" in shown.plain and not any("What is" in span for span in trained)
        assert "more characters)" in shown.plain and len(shown.plain) < 1200


async def test_a_text_file_previews_as_continued_pretraining(tiny_model: Path, tmp_path: Path):
    data = write_jsonl(tmp_path / "notes.jsonl", [{"text": f"Note {n}: the river rises in spring."} for n in range(3)])
    app = own_data_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")
        shown = await preview(app, pilot, data)
        assert shown.plain.startswith("3 examples of plain text; continued pretraining: loss on every token")
        assert [span.startswith("Note ") for span in trained_spans(shown)] == [True, True]
        advice = app.screen.query_one("#advice", Static)  # the paper's other regime, and what it measured there
        assert "Continued pretraining: every token trains." in str(advice.render())
        assert "GSM8K 0.187" in str(advice.render())
        app.screen.query_one("#regime", Select).value = "ift"  # refused at the preview: plain text has no answers
        await settle(app, pilot)
        assert "Instruction fine-tuning, not continued pretraining" in str(advice.render())


async def test_columns_that_match_no_format_ask_for_their_names_then_preview(tiny_model: Path, tmp_path: Path):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"q{n}?", "answer": f"a{n}"} for n in range(3)])
    app = own_data_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")
        fields = app.screen.query_one("#column-fields")
        assert not fields.display
        shown = await preview(app, pilot, data)
        assert "its columns are question, answer" in shown.plain
        assert "name its prompt and response columns" in shown.plain
        assert fields.display and str(app.screen.query_one("#data-format", Select).value) == "auto"
        await pilot.press("ctrl+n")  # refused: the preview of these choices failed
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        assert "its columns are question, answer" in str(app.screen.query_one("#error", Static).render())
        app.screen.query_one("#prompt-column", Input).value = "question"
        app.screen.query_one("#response-column", Input).value = "answer"
        shown = await preview(app, pilot)
        assert shown.plain.startswith("3 examples of prompt/response columns")
        assert [span.startswith("a") for span in trained_spans(shown)] == [True, True]
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        assert (app.choices.prompt_column, app.choices.response_column) == ("question", "answer")


async def test_a_bad_row_is_named_by_its_line_and_next_refuses_it(tiny_model: Path, tmp_path: Path):
    rows = [conversation(1, "2"), {"messages": [{"role": "user", "content": "Hi"}]}]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    app = own_data_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")
        shown = await preview(app, pilot, data)
        assert shown.plain == f"{data}: line 2: the conversation has no assistant turn: nothing to learn"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        error = str(app.screen.query_one("#error", Static).render())
        assert error.startswith("Its preview failed: ") and "line 2" in error and "Traceback" not in error
        assert app.screen.query_one("#data", Input).value == str(data)  # what was typed stays
        assert app.choices.data is None


async def test_the_format_and_regime_reach_the_study_settings_and_stay_going_back(tiny_model: Path, tmp_path: Path):
    data = write_jsonl(tmp_path / "chat.jsonl", [conversation(n, str(2 * n)) for n in range(3)])
    app = own_data_app(tiny_model, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "enter")
        app.screen.query_one("#data", Input).value = str(data)
        app.screen.query_one("#data-format", Select).value = "messages"
        app.screen.query_one("#regime", Select).value = "cpt"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        assert (app.choices.data_format, app.choices.regime) == ("messages", "cpt")
        settings = app.study_settings().data
        assert (settings.source, settings.format, settings.regime) == (str(data), "messages", "cpt")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        assert str(app.screen.query_one("#data-format", Select).value) == "messages"
        assert str(app.screen.query_one("#regime", Select).value) == "cpt"
        app.screen.query_one("#regime", Select).value = "auto"
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert (app.choices.data_format, app.choices.regime) == ("messages", None)
        assert app.study_settings().data.regime is None


def test_the_tasks_own_data_keeps_its_format_whatever_the_own_data_choices(tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(task="math", data_format="messages", regime="cpt")
    settings = app.study_settings().data
    assert (settings.task, settings.format, settings.regime) == ("math", "auto", None)


async def test_the_column_fields_show_for_the_columns_format_at_80x24(tmp_path: Path):
    app = AdvisorApp(runner=FakeTuner(), runs_root=tmp_path)
    app.choices = app.choices.__class__(task="custom", data="data.jsonl", data_format="columns", regime="ift")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert str(app.screen.query_one("#regime", Select).value) == "ift"
        buttons = app.screen.query_one("#buttons").region
        for field in ("#data-format", "#regime", "#preview", "#prompt-column", "#response-column"):
            region = app.screen.query_one(field).region
            assert region.height == 3 and region.bottom <= buttons.y, (field, region)
        app.screen.query_one("#data-format", Select).value = "sharegpt"
        await pilot.pause()
        assert not app.screen.query_one("#column-fields").display
