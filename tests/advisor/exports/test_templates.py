"""The chat templates the exports write: the marked ones render the same text and mark exactly the assistant turns
(what TRL's assistant_only_loss trains), and the user turns match the templates they are cut from."""

from __future__ import annotations

import pytest

from advisor.exports.templates import TEMPLATES, USER_TURNS, training_template

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]
ENDS = {"llama2": " </s>", "smollm2": "<|im_end|>"}
"""Each template's end of an assistant turn, which the model must learn to stop on."""


def render(template: str, conversation: list[dict[str, str]], **kwargs: bool) -> tuple[str, list[str]]:
    """The conversation as the template renders it through transformers, and the text its generation markers hold."""
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, spans = render_jinja_template(
        [conversation],
        chat_template=template,
        return_assistant_tokens_mask=True,
        bos_token="<s>",
        eos_token="</s>",
        **kwargs,
    )
    return rendered[0], [rendered[0][start:end] for start, end in spans[0]]


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_a_marked_template_renders_the_same_text_and_marks_each_assistant_turn_with_its_end(family):
    marked = training_template(family)
    assert marked is not None and "{% generation %}" in marked and "{% generation %}" not in TEMPLATES[family]
    text, spans = render(marked, CONVERSATION)
    assert text == render(TEMPLATES[family], CONVERSATION)[0]
    assert [span.strip() for span in spans] == [f"Hello!{ENDS[family]}".strip(), f"4{ENDS[family]}".strip()]


def test_no_marked_template_for_a_model_whose_template_is_not_known():
    assert training_template(None) is None and training_template("qwen2") is None


@pytest.mark.parametrize("family", sorted(USER_TURNS))
def test_a_user_turn_is_its_templates_text_up_to_the_answer(family):
    text, _ = render(TEMPLATES[family], [{"role": "user", "content": "{instruction}"}], add_generation_prompt=True)
    assert text == ("<s>" if family == "llama2" else "") + USER_TURNS[family]  # the tokenizer adds Llama-2's BOS
