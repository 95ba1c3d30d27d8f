from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.data.encode import encode_pairs
from tuner.data.load import load_records, resolve_data_dir
from tuner.data.packing import IGNORE_INDEX
from tuner.data.prepare import HELLASWAG_RESERVED_FROM, general_texts, prepare_study_data
from tuner.data.render import render_segments
from tuner.errors import AdvisorError
from tuner.settings import DataSettings, Packing


def settings(task: str = "math", data: str | None = None, **kwargs) -> DataSettings:
    return DataSettings(task=task, source=data, **kwargs)


def load_pairs(data: DataSettings, data_dir: Path | None) -> dict[str, list[str]]:
    """The records of one-turn conversations as prompt and response columns."""
    records = load_records(data, data_dir)
    assert all(len(turns) == 2 for turns in records.conversations)
    return {
        "prompt": [turns[0][1] for turns in records.conversations],
        "response": [turns[1][1] for turns in records.conversations],
    }


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_math_mirror_is_gsm8k_train_without_calculator_notes(data_dir):
    pairs = load_pairs(settings("math"), data_dir)
    assert len(pairs["prompt"]) == 7473
    assert all("<<" not in r for r in pairs["response"][:200])
    assert any("####" in r for r in pairs["response"][:10])


def test_code_mirror_holds_alpaca_evol_and_only_mbpp_training_ids(data_dir):
    pairs = load_pairs(settings("code"), data_dir)
    assert len(pairs["prompt"]) == 2017 + 1966 + 1953 + 464  # MBPP task ids 511-974
    mbpp_prompts = [p for p in pairs["prompt"] if "Your code should pass these tests:" in p]
    assert len(mbpp_prompts) == 464
    scored = json.loads((data_dir / "mbpp" / "mbpp.jsonl").read_text().splitlines()[10])  # task 11, scored
    assert not any(p.startswith(scored["text"]) for p in mbpp_prompts)


def test_shuffle_is_deterministic(data_dir):
    first = load_pairs(settings("math"), data_dir)["prompt"][:5]
    assert load_pairs(settings("math"), data_dir)["prompt"][:5] == first
    assert load_pairs(settings("math", seed=1), data_dir)["prompt"][:5] != first


def test_chat_template_formats_and_prompt_tokens_carry_no_loss(tokenizer):
    (prompt_text, _), (response_text, _) = render_segments(tokenizer, (("user", "What is 2+2?"), ("assistant", "4")))[0]
    assert prompt_text.endswith("<|im_start|>assistant\n") and response_text == "4<|im_end|>\n"
    (ids,), (labels,) = encode_pairs(tokenizer, ["What is 2+2?"], ["4"])
    prompt_len = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:] and len(ids) > prompt_len


def test_general_text_is_kept_apart_from_scored_items(data_dir):
    texts = general_texts(data_dir)
    arc_challenge = [
        json.loads(line)["question"]["stem"]
        for line in (data_dir / "arc" / "ARC-Challenge-Test.jsonl").read_text().splitlines()
    ]
    assert not set(arc_challenge[:50]) & {t.rsplit(" ", 1)[0] for t in texts}
    assert len(texts) == 2376 + (10042 - HELLASWAG_RESERVED_FROM) + 200


def test_prepared_data_splits_without_overlap_and_fills_rows(data_dir, tokenizer):
    data = prepare_study_data(settings("math"), Packing(seq_len=128, batch_size=2), tokenizer, data_dir)
    assert data.heldout.input_ids.shape == (8, 128) and data.general.input_ids.shape == (8, 128)
    assert len(data.train) > 1000 and data.heldout_examples > 0
    held = {tuple(r) for r in data.heldout.input_ids.tolist()}
    assert not held & {tuple(r) for r in data.train.input_ids.tolist()}


def test_confirm_sets_come_from_the_end_and_leave_the_rest_as_it_was(data_dir, tokenizer):
    plain = prepare_study_data(settings("math"), Packing(seq_len=128, batch_size=2), tokenizer, data_dir)
    data = prepare_study_data(
        settings("math"), Packing(seq_len=128, batch_size=2, confirm_rows=16), tokenizer, data_dir
    )
    assert plain.confirm is None and plain.confirm_general is None
    assert data.confirm.input_ids.shape == (16, 128) and data.confirm_general.input_ids.shape == (16, 128)
    assert (data.heldout.input_ids == plain.heldout.input_ids).all()
    assert (data.general.input_ids == plain.general.input_ids).all()
    # The training rows are the plain split's first ones: only examples from the end were spared.
    assert (data.train.input_ids == plain.train.input_ids[: len(data.train)]).all()
    assert data.train_examples < plain.train_examples
    rows = {tuple(r) for r in data.confirm.input_ids.tolist()}
    assert not rows & {tuple(r) for r in data.train.input_ids.tolist()}
    assert not rows & {tuple(r) for r in data.heldout.input_ids.tolist()}
    general = {tuple(r) for r in data.confirm_general.input_ids.tolist()}
    assert not general & {tuple(r) for r in data.general.input_ids.tolist()}


def test_small_data_spares_at_most_a_quarter_for_confirm_sets(tmp_path, tokenizer, data_dir):
    rows = "".join(f'"Say {i}","{i} {i} {i}"\n' for i in range(300))
    (tmp_path / "mine.csv").write_text("prompt,response\n" + rows)
    data = prepare_study_data(
        settings("custom", data=str(tmp_path / "mine.csv")),
        Packing(seq_len=64, batch_size=2, eval_rows=2, confirm_rows=1000),
        tokenizer,
        data_dir,
    )
    assert 0 < len(data.confirm) < 1000
    spared = 300 - data.heldout_examples - data.train_examples
    assert spared == (300 - data.heldout_examples) // 4


def test_custom_csv_with_named_columns(tmp_path, tokenizer):
    rows = "".join(f'"Say {i}","{i} {i} {i}"\n' for i in range(300))
    (tmp_path / "mine.csv").write_text("question,reply\n" + rows)
    pairs = load_pairs(
        settings("custom", data=str(tmp_path / "mine.csv"), prompt_column="question", response_column="reply"), None
    )
    assert len(pairs["prompt"]) == 300 and pairs["response"][0].count(" ") == 2


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            '{"q": "a", "a": "b"}\n',
            "d.jsonl",
            r"holds none of the formats read: its columns are q, a; expected messages, conversations, ",
        ),
        ("{not json\n", "d.jsonl", r"cannot read .*d.jsonl"),
        ("x", "d.txt", r"expected a .jsonl, .json, .csv or .parquet file"),
    ],
)
def test_custom_file_errors_say_what_is_wrong(tmp_path, content, name, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(AdvisorError, match=message):
        load_pairs(settings("custom", data=str(tmp_path / name)), None)


def test_missing_mirror_file_and_unreachable_hub_say_where_they_looked(tmp_path):
    with pytest.raises(AdvisorError, match=r"dataset file not found: .*gsm8k/train.jsonl"):
        load_pairs(settings("math"), tmp_path)
    with pytest.raises(
        AdvisorError,
        match=r"cannot load dataset 'openai/gsm8k' from the Hugging Face hub .*--data-dir or ADVISOR_DATA_DIR",
    ):
        load_pairs(settings("math"), None)
    with pytest.raises(AdvisorError, match=r"data directory not found: .*nowhere \(from --data-dir\)"):
        resolve_data_dir(str(tmp_path / "nowhere"))
