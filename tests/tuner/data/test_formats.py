"""The formats people keep data in, found from the columns and read into conversations or documents; what is wrong
with a row said in one line with its line number (pure: no tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.data.files import read_table
from tuner.data.formats import EXAMPLES, FORMATS
from tuner.data.load import load_records
from tuner.data.sources import file_records
from tuner.errors import AdvisorError
from tuner.settings import DataSettings


def write(path: Path, *rows: object) -> DataSettings:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return DataSettings("custom", source=str(path))


def read(settings: DataSettings):
    return file_records(read_table(Path(str(settings.source))), settings)


def error(settings: DataSettings) -> str:
    with pytest.raises(AdvisorError) as raised:
        read(settings)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    return message


SYSTEM, USER, ASSISTANT = (
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {
        "role": "assistant",
        "content": "Hello!",
    },
)


def test_every_format_is_found_from_its_columns(tmp_path):
    found = {}
    for name in FORMATS:
        found[name] = read(write(tmp_path / f"{name}.jsonl", json.loads(EXAMPLES[name]))).format
    assert found == {name: name for name in FORMATS}


def test_conversations_keep_every_turn_and_the_system_prompt(tmp_path):
    turns = [SYSTEM, USER, ASSISTANT, {"role": "user", "content": "More?"}, {"role": "assistant", "content": "No."}]
    records = read(write(tmp_path / "chat.jsonl", {"messages": turns}))
    assert records.conversations == (
        (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "More?"), ("assistant", "No.")),
    )
    # OpenAI's content parts of type text are read as their text.
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert read(write(tmp_path / "parts.jsonl", {"messages": [parts, ASSISTANT]})).conversations[0][0] == ("user", "ab")


def test_sharegpt_roles_map_to_user_and_assistant(tmp_path):
    turns = [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]
    records = read(write(tmp_path / "share.jsonl", {"conversations": turns}))
    assert records.format == "sharegpt"
    assert records.conversations == ((("system", "S"), ("user", "Q"), ("assistant", "A")),)
    # A conversations column of role/content turns is read as messages.
    assert read(write(tmp_path / "oai.jsonl", {"conversations": [USER, ASSISTANT]})).format == "messages"


def test_alpaca_keeps_its_input_and_prompt_completion_text_is_untemplated(tmp_path):
    alpaca = read(write(tmp_path / "a.jsonl", {"instruction": "Add.", "input": "2 and 3", "output": "5"}))
    assert alpaca.conversations == ((("user", "Add.\n\n2 and 3"), ("assistant", "5")),)
    plain = read(write(tmp_path / "pc.jsonl", {"prompt": "The sky is", "completion": " blue."}))
    assert not plain.templated and plain.conversations == ((("user", "The sky is"), ("assistant", " blue.")),)
    chat = read(write(tmp_path / "pcm.jsonl", {"prompt": [SYSTEM, USER], "completion": [ASSISTANT]}))
    assert chat.templated and chat.conversations == (
        (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")),
    )


def test_a_text_column_beside_a_structured_format_is_noted_not_trained(tmp_path):
    records = read(write(tmp_path / "t.jsonl", {"instruction": "a", "output": "b", "text": "a b"}))
    assert records.format == "alpaca" and "--format text" in records.note
    named = DataSettings("custom", source=str(tmp_path / "t.jsonl"), format="text")
    assert read(named).texts == ("a b",)


def test_two_structured_formats_in_every_row_need_format(tmp_path):
    settings = write(tmp_path / "both.jsonl", {"messages": [USER, ASSISTANT], "instruction": "a", "output": "b"})
    assert error(settings) == f"{settings.source} could be read as messages or alpaca: name one with --format"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"messages": [USER, ASSISTANT]}, {"messages": [USER]}], "line 2: the conversation has no assistant turn"),
        (
            [{"messages": [USER, {"role": "bot", "content": "x"}]}],
            "line 1: turn 2 has the unknown role 'bot' (known: system, user, assistant, tool)",
        ),
        (
            [{"messages": [USER, {"role": "assistant", "content": None, "tool_calls": []}]}],
            "line 1: turn 2 (assistant) has no text in 'content' (found null; tool calls and images are not read)",
        ),
        (
            [{"messages": [USER, {"role": "assistant", "content": [{"type": "image_url"}]}]}],
            "line 1: turn 2 (assistant) has no text in 'content' (found a list;",
        ),
        ([{"messages": "Hi"}], "line 1: the conversation is a string, not a list of turns"),
        (
            [{"conversations": [{"from": "human", "value": "Q"}, {"from": "narrator", "value": "A"}]}],
            "line 1: turn 2 has the unknown role 'narrator' (known: system, human, user, gpt,",
        ),
        (
            [{"messages": [USER, ASSISTANT]}, {"instruction": "a", "output": "b"}],
            "line 2: holds alpaca, not messages like line 1: one format per file",
        ),
        ([{"text": ""}, {"text": None}], "has no usable rows: every one of its 2 rows has an empty or null text"),
    ],
)
def test_bad_rows_are_named_by_their_line(tmp_path, rows, message):
    settings = write(tmp_path / "bad.jsonl", *rows)
    assert f"{settings.source}: {message}" in error(settings) or message in error(settings)


def test_blank_lines_count_as_an_editor_counts_them(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps({"messages": [USER, ASSISTANT]}) + "\n\n\n" + json.dumps({"messages": [USER]}) + "\n")
    message = error(DataSettings("custom", source=str(path)))
    assert message.endswith("line 4: the conversation has no assistant turn: nothing to learn")


def test_a_json_array_and_a_csv_name_items_and_rows(tmp_path):
    array = tmp_path / "chat.json"
    array.write_text(json.dumps([{"messages": [USER, ASSISTANT]}, {"messages": [USER]}]))
    assert "item 2: the conversation has no assistant turn" in error(DataSettings("custom", source=str(array)))
    table = tmp_path / "rows.csv"
    table.write_text("instruction,input,output\nAdd.,2 and 3,5\nSay hi.,,hi\n")
    assert read(DataSettings("custom", source=str(table))).conversations[1] == (
        ("user", "Say hi."),
        ("assistant", "hi"),
    )


def test_a_named_format_whose_columns_are_missing_lists_the_columns(tmp_path):
    settings = write(tmp_path / "q.jsonl", {"question": "a", "answer": "b"})
    named = DataSettings("custom", source=settings.source, format="sharegpt")
    assert (
        error(named)
        == f"{settings.source} has no column 'conversations' for --format sharegpt; its columns are question, answer"
    )


def test_empty_rows_are_left_out_and_counted_and_the_order_is_the_studys_shuffle(tmp_path):
    rows = [{"text": f"document {i}" if i % 5 else ""} for i in range(50)]
    settings = write(tmp_path / "docs.jsonl", *rows)
    records = load_records(settings, None)
    assert records.format == "text" and records.skipped == 10 and len(records) == 40
    assert sorted(records.texts) == sorted(r["text"] for r in rows if r["text"])
    assert records.texts != tuple(r["text"] for r in rows if r["text"])  # shuffled
    assert load_records(settings, None) == records


def test_format_and_regime_are_checked_and_kept_out_of_old_identities():
    from tuner.settings import _data_fields

    with pytest.raises(ValueError, match="format must be one of auto, messages"):
        DataSettings("custom", source="x.jsonl", format="chatml")
    with pytest.raises(ValueError, match="regime must be one of ift, cpt, got 'sft'"):
        DataSettings("custom", source="x.jsonl", regime="sft")
    with pytest.raises(ValueError, match="--format names the format of your own data"):
        DataSettings("math", format="alpaca")
    assert "format" not in _data_fields(DataSettings("math")) and "regime" not in _data_fields(DataSettings("math"))
    assert _data_fields(DataSettings("custom", source="x", format="text", regime="cpt"))["regime"] == "cpt"


def test_a_hub_dataset_is_read_in_its_format_with_rows_named_by_number(monkeypatch):
    import datasets

    from tuner.data import load

    rows = [
        {"conversations": [{"from": "human", "value": f"Q{i}"}, {"from": "gpt", "value": f"A{i}"}]} for i in range(3)
    ]
    monkeypatch.setattr(load, "load_hub", lambda source: datasets.Dataset.from_list(rows))
    records = load_records(DataSettings("custom", source="someone/chats"), None)
    assert records.format == "sharegpt" and sorted(records.conversations)[0] == (("user", "Q0"), ("assistant", "A0"))
    rows.append({"conversations": [{"from": "human", "value": "Q"}]})
    with pytest.raises(AdvisorError, match=r"^someone/chats: row 4: the conversation has no assistant turn"):
        load_records(DataSettings("custom", source="someone/chats"), None)


def test_a_csv_cell_holding_the_turns_as_json_is_read_as_a_conversation(tmp_path):
    import csv

    path = tmp_path / "chat.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["messages"])
        writer.writerow([json.dumps([USER, ASSISTANT])])
        writer.writerow(['[{"role": "user", "content": "Hi"}'])
    settings = DataSettings("custom", source=str(path))
    assert error(settings) == f"{path}: row 2: the conversation is not valid JSON: Expecting ',' delimiter (column 35)"
    path.write_text(path.read_text().splitlines()[0] + "\n" + path.read_text().splitlines()[1] + "\n")
    assert read(settings).conversations == ((("user", "Hi"), ("assistant", "Hello!")),)
