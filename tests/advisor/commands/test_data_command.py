"""`advisor data FILE` and own data in `advisor tune` / `advisor train`: the format found said before anything trains,
conversations and plain text studied end to end with the tiny model, a bad row one line with its line number."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tuner.fullrun.handover import Overrides, run_settings
from tuner.settings import DataSettings, LoraSettings, StudySettings, TrainBudget, TrainingRecipe

TURNS = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "It is 6."},
]


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tune_args(path: Path, model: Path, data_dir: Path, out: Path) -> list[str]:
    """A one-trial study of the file, unscored, small enough for the tiny model."""
    return [
        "tune", "--task", "custom", "--data", str(path), "--model", str(model), "--data-dir", str(data_dir),
        "--trials", "1", "--trial-tokens", "512", "--batch-size", "2", "--seq-len", "64", "--score-items", "0",
        "--out", str(out),
    ]  # fmt: skip


def chat_rows(count: int) -> list[object]:
    return [{"messages": [{**turn, "content": f"{turn['content']} ({i})"} for turn in TURNS]} for i in range(count)]


def test_data_shows_the_format_the_counts_and_the_trained_text(capsys, tmp_path, tiny_model):
    path = write(tmp_path / "chat.jsonl", chat_rows(5))
    code, out, err = run_cli(capsys, "data", str(path), "--model", str(tiny_model), "--examples", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("5 examples of conversations (a messages list of role and content); instruction tuning")
    assert "example 1 (trained text between « and »):" in lines
    assert "«4 (" in out and "«It is 6. (" in out and "<|im_start|>system\nYou add numbers." in out
    code, out, _ = run_cli(capsys, "data", str(path), "--model", str(tiny_model), "--json")
    shown = json.loads(out)
    assert shown["counts"]["format"] == "messages" and len(shown["examples"]) == 2
    assert next(span["text"] for span in shown["examples"][0] if span["trained"]).startswith("4 (")


def test_a_bad_row_is_one_line_with_its_line_number(capsys, tmp_path, tiny_model):
    path = write(tmp_path / "chat.jsonl", [*chat_rows(2), {"messages": TURNS[:2]}])
    code, out, err = run_cli(capsys, "data", str(path), "--model", str(tiny_model))
    assert code == 2 and out == ""
    assert err == f"advisor: error: {path}: line 3: the conversation has no assistant turn: nothing to learn\n"
    code, _, err = run_cli(capsys, "data", str(path), "--format", "chatml")
    assert code == 2 and "argument --format: invalid choice: 'chatml'" in err


def test_a_conversation_study_says_its_data_and_records_it(capsys, tmp_path, tiny_model, data_dir):
    path = write(tmp_path / "chat.jsonl", chat_rows(120))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *tune_args(path, tiny_model, data_dir, out))
    assert code == 0, err
    assert "data: 120 examples of conversations (a messages list of role and content); instruction tuning" in err
    recorded = json.loads((out / "data.json").read_text())
    assert (recorded["format"], recorded["regime"], recorded["examples"]) == ("messages", "ift", 120)


def test_a_text_study_runs_as_continued_pretraining(capsys, tmp_path, tiny_model, data_dir):
    lines = (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:150]
    path = write(tmp_path / "docs.jsonl", [{"text": json.loads(line)["answer"]} for line in lines])
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *tune_args(path, tiny_model, data_dir, out))
    assert code == 0, err
    assert "data: 150 examples of plain text; continued pretraining: loss on every token" in err
    assert json.loads((out / "data.json").read_text())["regime"] == "cpt"
    code, _, err = run_cli(capsys, *tune_args(path, tiny_model, data_dir, tmp_path / "other"), "--regime", "ift")
    assert code == 2 and "is plain text, with no responses to learn: --regime ift needs" in err
    assert not (tmp_path / "other").exists()


def test_the_full_run_keeps_the_studys_format_and_regime_unless_told(tmp_path):
    data = DataSettings("custom", source="chat.jsonl", format="messages", regime="cpt")
    study = StudySettings(model="m", data=data, trials=2, budget=TrainBudget(train_tokens=4096))
    recipe = TrainingRecipe(LoraSettings(rank=8, alpha=16, targets="all"), 1e-3)
    settings = run_settings(recipe, "custom", "m", Overrides(), study)
    assert (settings.data.format, settings.data.regime) == ("messages", "cpt")
    changed = run_settings(recipe, "custom", "m", Overrides(regime="ift"), study)
    assert (changed.data.format, changed.data.regime) == ("messages", "ift")
    assert StudySettings.from_json(study.to_json()).data == data
