"""What carries loss, format by format, with the tiny model's tokenizer: exactly the assistant turns as the chat
template writes them (every one of a multi-turn conversation), every token of plain text, the completion after a
plain prompt; packed rows keep each example's positions (attention by example: tests/tuner/training/test_loss.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.data.encode import counted_examples
from tuner.data.packing import IGNORE_INDEX, pack
from tuner.data.preview import preview_data, preview_lines
from tuner.data.render import DEFAULT_TEMPLATE, encode_conversations, render_segments
from tuner.errors import AdvisorError
from tuner.settings import DataSettings

TURNS = (
    ("system", "You add numbers."),
    ("user", "What is 2 + 2?"),
    ("assistant", "4"),
    ("user", "And 3 + 3?"),
    ("assistant", "It is 6."),
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def trained_runs(ids: list[int], labels: list[int], tokenizer) -> list[str]:
    """The text of each contiguous run of tokens that carry loss."""
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def write(path: Path, *rows: object) -> DataSettings:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return DataSettings("custom", source=str(path))


def test_each_assistant_turn_and_only_those_carry_loss_as_the_template_writes_them(tokenizer):
    messages = [{"role": role, "content": text} for role, text in TURNS]
    (ids,), (mask,), untemplated = encode_conversations(tokenizer, [TURNS])
    assert untemplated == 0
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    labels = [token if flag else IGNORE_INDEX for token, flag in zip(ids, mask, strict=True)]
    assert trained_runs(ids, labels, tokenizer) == ["4<|im_end|>\n", "It is 6.<|im_end|>\n"]


def test_a_single_turn_pair_is_encoded_as_before(tokenizer):
    (prompt, _), (response, _) = render_segments(tokenizer, (("user", "What is 2+2?"), ("assistant", "4")))[0]
    assert prompt.endswith("<|im_start|>assistant\n") and response == "4<|im_end|>\n"
    (ids,), (mask,), _ = encode_conversations(tokenizer, [(("user", "What is 2+2?"), ("assistant", "4"))])
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids == prompt_ids + tokenizer(response, add_special_tokens=False)["input_ids"]
    assert mask == [False] * len(prompt_ids) + [True] * (len(ids) - len(prompt_ids))


def test_a_template_that_does_not_grow_turn_by_turn_gets_the_stated_default(tokenizer):
    other = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    # Rewrites the conversation by its length: rendering a prefix is not a prefix of the whole.
    other.chat_template = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    segments, by_template = render_segments(other, TURNS)
    assert not by_template
    assert segments[0] == (
        "You add numbers.\n\n### Instruction:\nWhat is 2 + 2?\n\n### Response:\n",
        False,
    )
    assert [text for text, trained in segments if trained] == ["4<|im_end|>", "It is 6.<|im_end|>"]
    assert DEFAULT_TEMPLATE["assistant"] == "### Response:\n"
    other.chat_template = None
    assert render_segments(other, TURNS)[0] == segments


def test_multi_turn_files_train_on_every_assistant_turn_and_pack_by_example(tmp_path, tokenizer):
    rows = [{"messages": [{"role": r, "content": f"{t} ({i})"} for r, t in TURNS]} for i in range(12)]
    settings = write(tmp_path / "chat.jsonl", *rows)
    examples, counts = counted_examples(settings, 128, tokenizer, None)
    assert counts.format == "messages" and counts.regime == "ift" and counts.kept == 12 and counts.dropped == 0
    for ids, labels in examples:
        runs = trained_runs(ids, labels, tokenizer)
        assert len(runs) == 2 and runs[0].startswith("4 (") and runs[1].startswith("It is 6. (")
    rows_ = pack(examples, 64)
    starts = [i for i in range(rows_.tokens()) if rows_.position_ids.reshape(-1)[i] == 0]
    lengths = [min(len(ids), 64) for ids, _ in examples]
    assert starts == [sum(lengths[:k]) for k in range(len(starts))]  # positions restart where an example starts
    assert counts.trained_tokens == sum(sum(1 for label in labels if label != IGNORE_INDEX) for _, labels in examples)


def test_plain_text_trains_every_token_and_long_documents_are_split(tmp_path, tokenizer):
    words = " ".join(f"word{i}" for i in range(200))
    settings = write(tmp_path / "docs.jsonl", {"text": "A short document."}, {"text": words})
    examples, counts = counted_examples(settings, 32, tokenizer, None)
    assert counts.format == "text" and counts.regime == "cpt" and counts.truncated == 1
    assert all(len(ids) <= 32 for ids, _ in examples) and len(examples) > 2
    for ids, labels in examples:
        assert labels[0] == IGNORE_INDEX and labels[1:] == ids[1:]  # nothing before a piece's first token is seen
    whole = [token for ids, _ in examples for token in ids]
    assert sorted(tokenizer.decode(whole).split("<|im_end|>")) == sorted(["", "A short document.", words])
    assert counts.trained_tokens == counts.tokens - len(examples)


def test_plain_prompt_completion_trains_the_completion_after_its_prompt(tmp_path, tokenizer):
    settings = write(tmp_path / "pc.jsonl", *[{"prompt": f"The sky {i} is", "completion": " blue."} for i in range(4)])
    examples, counts = counted_examples(settings, 64, tokenizer, None)
    assert not counts.templated and counts.default_template == 0
    ids, labels = examples[0]
    assert tokenizer.decode(ids).startswith("The sky") and trained_runs(ids, labels, tokenizer) == [" blue.<|im_end|>"]


def test_cpt_on_a_conversation_file_trains_every_token(tmp_path, tokenizer):
    rows = [{"messages": [{"role": r, "content": t} for r, t in TURNS]}] * 3
    settings = write(tmp_path / "chat.jsonl", *rows)
    examples, counts = counted_examples(
        DataSettings("custom", source=settings.source, regime="cpt"), 512, tokenizer, None
    )
    assert counts.regime == "cpt"
    assert all(labels[1:] == ids[1:] for ids, labels in examples)


def test_long_answers_are_cut_and_those_without_a_trained_token_dropped(tmp_path, tokenizer):
    long_prompt = " ".join(["word"] * 200)
    rows = [{"prompt": "Hi", "response": "Hello there, " * 30}, {"prompt": long_prompt, "response": "ok"}]
    settings = write(tmp_path / "pairs.jsonl", *rows, {"prompt": "Yo", "response": "Yo"})
    _, counts = counted_examples(settings, 48, tokenizer, None)
    assert (counts.examples, counts.kept, counts.dropped, counts.truncated) == (3, 2, 1, 1)


def test_the_preview_says_the_format_counts_and_marks_the_trained_text(tmp_path, tokenizer):
    settings = write(tmp_path / "chat.jsonl", {"messages": [{"role": r, "content": t} for r, t in TURNS]})
    lines = preview_lines(preview_data(settings, 512, tokenizer, None))
    assert lines[0].startswith("1 example of conversations (a messages list of role and content); instruction")
    assert "«4<|im_end|>\n»" in lines[-1] and "«It is 6.<|im_end|>\n»" in lines[-1]
    assert "<|im_start|>system\nYou add numbers." in lines[-1]
    without = preview_data(settings, 512, None, None)  # before a model loads: the default format, no counts
    assert without.counts is None and "### Response:\n" in preview_lines(without)[-1]
    text = write(tmp_path / "docs.jsonl", {"text": "Just text."})
    assert "continued pretraining: loss on every token" in preview_lines(preview_data(text, 512, tokenizer, None))[0]


def test_ift_on_plain_text_is_refused_in_one_line(tmp_path, tokenizer):
    settings = write(tmp_path / "docs.jsonl", {"text": "Just text."})
    with pytest.raises(AdvisorError, match="is plain text, with no responses to learn: --regime ift needs"):
        counted_examples(DataSettings("custom", source=settings.source, regime="ift"), 64, tokenizer, None)


def test_a_conversation_packed_after_another_sees_only_itself(tmp_path, tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from tuner.training.attention import packed_attention

    first = [{"role": r, "content": t} for r, t in TURNS]
    second = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    settings = write(tmp_path / "two.jsonl", {"messages": first}, {"messages": second})
    examples, _ = counted_examples(DataSettings("custom", source=settings.source, seed=0), 512, tokenizer, None)
    total = sum(len(ids) for ids, _ in examples)
    row = pack(examples, total)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad(), packed_attention(model):
        packed = model(
            input_ids=torch.tensor(row.input_ids), position_ids=torch.tensor(row.position_ids), use_cache=False
        ).logits[0]
        start = len(examples[0][0])
        alone = model(input_ids=torch.tensor([examples[1][0]]), use_cache=False).logits[0]
    torch.testing.assert_close(packed[start:], alone, rtol=1e-4, atol=1e-5)
