"""The token cache: the same examples as encoding afresh, read back instead of tokenised, keyed by texts and
tokenizer, and never in the way (an unreadable file is a miss, an unwritable folder is skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.data import encode as data
from tuner.data import render
from tuner.data.load import load_records
from tuner.data.packing import IGNORE_INDEX
from tuner.data.token_cache import CACHE_DIR, cached_encoding, tokenizer_identity
from tuner.settings import DataSettings


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ADVISOR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / CACHE_DIR


@pytest.fixture
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture
def pairs_file(tmp_path: Path) -> DataSettings:
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"What is {i} + {i}?", "response": f"{i} + {i} = {2 * i}." * (1 + i % 4)} for i in range(40)]
    rows.append({"prompt": "A prompt whose answer is empty", "response": ""})  # left out: nothing to learn
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return DataSettings("custom", source=str(path))


def fresh(settings: DataSettings, seq_len: int, tokenizer) -> list[data.Example]:
    """What task_examples returned before the cache: encode_pairs over the rows, those with a loss token kept."""
    turns = load_records(settings, None).conversations
    input_ids, labels = data.encode_pairs(tokenizer, [t[0][1] for t in turns], [t[1][1] for t in turns])
    return [(i, lab) for i, lab in zip(input_ids, labels, strict=True) if any(t != IGNORE_INDEX for t in lab[:seq_len])]


def test_cached_examples_equal_fresh_ones_and_are_read_without_tokenising(cache, tokenizer, pairs_file, monkeypatch):
    first = data.task_examples(pairs_file, 64, tokenizer, None)
    assert first == fresh(pairs_file, 64, tokenizer)
    assert len(first) == 40
    assert len(list(cache.glob("chat-*.npz"))) == 1

    def no_tokenising(*_args, **_kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(data, "encode_conversations", no_tokenising)
    monkeypatch.setattr(render, "encode_conversations", no_tokenising)
    assert data.task_examples(pairs_file, 64, tokenizer, None) == first
    # Another row length filters the same cached encoding: a prompt longer than 8 tokens leaves no loss token.
    short = data.task_examples(pairs_file, 8, tokenizer, None)
    assert short == [e for e in first if any(t != IGNORE_INDEX for t in e[1][:8])] and len(short) < len(first)


def test_other_texts_or_another_tokenizer_are_other_entries(cache, tokenizer, pairs_file, tmp_path):
    data.task_examples(pairs_file, 64, tokenizer, None)
    data.task_examples(DataSettings("custom", source=pairs_file.source, seed=1), 64, tokenizer, None)  # another order
    assert len(list(cache.glob("chat-*.npz"))) == 2

    other = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    other.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    assert tokenizer_identity(other) != tokenizer_identity(tokenizer)
    examples = data.task_examples(pairs_file, 64, other, None)
    assert examples == fresh(pairs_file, 64, other) != fresh(pairs_file, 64, tokenizer)
    assert len(list(cache.glob("chat-*.npz"))) == 3


def test_an_unreadable_entry_is_encoded_again_and_replaced(cache, tokenizer, pairs_file):
    first = data.task_examples(pairs_file, 64, tokenizer, None)
    (entry,) = cache.glob("chat-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short, as by a full disk
    assert data.task_examples(pairs_file, 64, tokenizer, None) == first
    assert data.task_examples(pairs_file, 64, tokenizer, None) == first
    assert entry.stat().st_size > 100


def test_an_unwritable_cache_only_costs_the_encoding(tmp_path, monkeypatch, tokenizer, pairs_file):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("ADVISOR_CACHE_DIR", str(blocked))
    assert data.task_examples(pairs_file, 64, tokenizer, None) == fresh(pairs_file, 64, tokenizer)


def test_general_text_is_cached_with_its_order(cache, tokenizer):
    texts = ["The first document, a sentence long.", "A second one.", "Ünïcode and \u2028 line breaks."]
    calls = []

    def encode():
        calls.append(1)
        ids = data.encode_texts(tokenizer, texts)
        return ids, [[True] * len(item) for item in ids]

    first = cached_encoding("general", (texts,), tokenizer, encode)
    assert cached_encoding("general", (texts,), tokenizer, encode) == first and len(calls) == 1
    assert first[0] == data.encode_texts(tokenizer, texts)
    cached_encoding("general", (texts[::-1],), tokenizer, encode)
    assert len(calls) == 2


def test_a_slow_tokenizer_is_not_cached(cache):
    class Slow:
        eos_token = "</s>"

    calls = []
    for _ in range(2):
        cached_encoding("general", (["text"],), Slow(), lambda: (calls.append(1) or [[1, 2]], [[True, True]]))
    assert tokenizer_identity(Slow()) is None and len(calls) == 2 and not cache.exists()


def test_an_edited_file_is_read_afresh_in_the_same_process(cache, tokenizer, pairs_file):
    first = data.task_examples(pairs_file, 64, tokenizer, None)
    path = Path(pairs_file.source)
    path.write_text(path.read_text() + json.dumps({"prompt": "One more?", "response": "Yes, one more."}) + "\n")
    again = data.task_examples(pairs_file, 64, tokenizer, None)
    assert len(again) == len(first) + 1 and again == fresh(pairs_file, 64, tokenizer)


def test_general_text_is_read_once_and_each_caller_gets_its_own_list(data_dir, monkeypatch):
    from tuner.data import prepare

    reads = []
    read = prepare._read_general_texts
    monkeypatch.setattr(prepare, "_read_general_texts", lambda where: reads.append(where) or read(where))
    prepare._general_texts.cache_clear()
    first, second = prepare.general_texts(data_dir), prepare.general_texts(data_dir)
    assert first == second and len(first) > 1000 and reads == [data_dir]
    first.clear()  # as a caller's shuffle would change it: the next caller's copy is whole
    assert prepare.general_texts(data_dir) == second and reads == [data_dir]
