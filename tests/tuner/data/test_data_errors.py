"""A person's own data file that cannot be trained on: one line naming the file, the line and what is wrong, and
nothing left in the Hugging Face datasets cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tuner.data.load import load_records
from tuner.errors import AdvisorError
from tuner.settings import DataSettings


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datasets cache for this test: the environment variable, and the paths `datasets` read from it."""
    import datasets.config

    cache = tmp_path / "hf-datasets-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")
    return cache


def load_error(path: Path, hf_cache: Path, **columns: str) -> str:
    """The one-line message of loading `path` as custom data, after checking the load left the cache empty."""
    with pytest.raises(AdvisorError) as raised:
        load_records(DataSettings("custom", source=str(path), **columns), None)
    assert list(hf_cache.rglob("*")) == []
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    return message


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_an_empty_file_says_it_is_empty(tmp_path, hf_cache):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert load_error(path, hf_cache) == f"cannot read {path}: the file is empty"


def test_a_broken_line_is_named_by_its_editor_line_and_the_json_error(tmp_path, hf_cache):
    path = tmp_path / "broken.jsonl"
    good = {"prompt": "What is 2+2?", "response": "4"}
    path.write_text(jsonl(good) + '{"prompt": "a" "response": "b"}\n' + jsonl(good))
    assert load_error(path, hf_cache) == f"cannot read {path}: line 2: Expecting ',' delimiter (column 16)"
    # Blank lines count as an editor counts them.
    path.write_text(jsonl(good) + "\n\n" + '{"prompt": "a", "response": }\n')
    assert load_error(path, hf_cache) == f"cannot read {path}: line 4: Expecting value (column 29)"


def test_a_line_that_is_not_an_object_or_not_utf8_is_named(tmp_path, hf_cache):
    path = tmp_path / "odd.jsonl"
    path.write_text(jsonl({"prompt": "a", "response": "b"}, ["a", "b"]))
    assert load_error(path, hf_cache) == f"cannot read {path}: line 2: expected a JSON object, found an array"
    path.write_bytes(jsonl({"prompt": "a", "response": "b"}).encode() + b'{"prompt": "caf\xe9", "response": "b"}\n')
    assert load_error(path, hf_cache) == f"cannot read {path}: line 2: not UTF-8 text (byte 0xe9 at column 16)"


def test_a_csv_line_with_too_many_fields_is_named_by_its_editor_line(tmp_path, hf_cache):
    path = tmp_path / "pairs.csv"
    path.write_text('prompt,response\n"a\nsecond line",b\nc,d,e\n')  # the quoted value spans lines 2-3
    assert load_error(path, hf_cache) == (
        f"cannot read {path}: line 4: 3 fields where the header has 2 (quote a value that holds a comma)"
    )


def test_a_directory_says_it_is_a_directory(tmp_path, hf_cache):
    folder = tmp_path / "pairs.jsonl"
    folder.mkdir()
    assert load_error(folder, hf_cache) == f"{folder} is a directory: give one .jsonl, .json, .csv or .parquet file"


def test_rows_without_a_prompt_and_a_response_are_no_usable_rows(tmp_path, hf_cache):
    path = tmp_path / "empty-answers.jsonl"
    path.write_text(jsonl({"prompt": "a", "response": ""}, {"prompt": "b", "response": None}, {"prompt": " "}))
    assert load_error(path, hf_cache) == (
        f"{path} has no usable rows: every one of its 3 rows has an empty or null prompt or response"
    )


def test_missing_columns_are_no_usable_rows_and_the_file_columns_are_listed(tmp_path, hf_cache):
    path = tmp_path / "renamed.jsonl"
    path.write_text(jsonl({"question": "a", "answer": "b"}, {"question": "c", "answer": "d"}))
    assert load_error(path, hf_cache) == (
        f"{path} holds none of the formats read: its columns are question, answer; expected messages, "
        "conversations, instruction/output, prompt/completion, prompt/response or text (name other columns with "
        "--prompt-column and --response-column)"
    )
    assert load_error(path, hf_cache, prompt_column="question", response_column="reply") == (
        f"{path} has no column 'reply'; its columns are question, answer"
    )


def test_a_good_file_keeps_its_rows_and_order_and_leaves_no_cache(tmp_path, hf_cache):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Say {i}", "response": f"{i}" if i else ""} for i in range(5)]
    path.write_text(jsonl(*rows[:2]) + "\n" + jsonl(*rows[2:], {"prompt": "no answer", "response": None}))
    in_file_order = [(("user", r["prompt"]), ("assistant", r["response"])) for r in rows[1:]]  # no empty answer
    records = load_records(DataSettings("custom", source=str(path)), None)
    assert records.format == "columns" and records.skipped == 2
    assert sorted(records.conversations) == sorted(in_file_order)
    assert list(hf_cache.rglob("*")) == []


def test_a_bad_file_is_refused_before_datasets_is_imported(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{oops\n')
    probe = (
        "import sys\nfrom tuner.data.load import load_records\nfrom tuner.settings import DataSettings\n"
        f"try:\n    load_records(DataSettings('custom', source={str(path)!r}), None)\n"
        "except Exception as error:\n    print(type(error).__name__, error)\n"
        "print('LOADED', *(m for m in ('datasets', 'torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    error, loaded = result.stdout.splitlines()
    assert error.startswith(f"AdvisorError cannot read {path}: line 2: Expecting property name")
    assert loaded == "LOADED"


def test_the_cli_prints_one_line_and_exits_2(capsys, tmp_path, tiny_model, hf_cache):
    path = tmp_path / "broken.jsonl"
    path.write_text(jsonl({"prompt": "a", "response": "b"}) + '{"prompt": "a" "response": "b"}\n')
    out_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "tune", "--task", "custom", "--data", str(path), "--model", str(tiny_model), "--out", str(out_dir)
    )
    assert code == 2
    assert err == f"advisor: error: cannot read {path}: line 2: Expecting ',' delimiter (column 16)\n"
    assert not out_dir.exists() and list(hf_cache.rglob("*")) == []
