"""Conversations as the model reads them: rendered with its own chat template, split into the spans that carry
loss (every assistant turn) and those that do not (system, user and tool turns, the template's own markup).

Each assistant turn's span is what rendering the conversation up to and including it adds to rendering it up to
the turn with the generation prompt, so the trained text is exactly the template's, turn by turn. A template that
does not render a conversation as a growing prefix (one that rewrites earlier turns, or refuses a role order), or a
tokenizer without one, gets DEFAULT_TEMPLATE instead, and the summary says so.

No torch: a tokenizer is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner.data.formats import Conversation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Segment = tuple[str, bool]
"""A piece of rendered text and whether it carries loss."""

DEFAULT_TEMPLATE = {
    "system": "{content}\n\n",
    "user": "### Instruction:\n{content}\n\n",
    "tool": "### Input:\n{content}\n\n",
    "assistant": "### Response:\n",
}
"""How a conversation is written for a model without a chat template (Alpaca's instruction format): each turn's
header and text; an assistant turn's text and the end-of-sequence token after its header carry loss."""
DEFAULT_TEMPLATE_NAME = "the Alpaca instruction format (### Instruction: / ### Response:)"


def render_segments(
    tokenizer: PreTrainedTokenizerBase | None, conversation: Conversation, templated: bool = True
) -> tuple[list[Segment], bool]:
    """The conversation's text in spans, and whether the model's chat template wrote it (False: DEFAULT_TEMPLATE or
    plain text). `templated` False is prompt/completion as plain text: the prompt, then the completion and EOS."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    if not templated:
        prompt = "".join(text for role, text in conversation if role != "assistant")
        completion = "".join(text for role, text in conversation if role == "assistant")
        return [(prompt, False), (f"{completion}{eos}", True)], False
    if getattr(tokenizer, "chat_template", None):
        segments = _template_segments(tokenizer, conversation)
        if segments is not None:
            return _merged(segments), True
    return _merged(_default_segments(conversation, eos)), False


def _merged(segments: list[Segment]) -> list[Segment]:
    """Neighbouring spans of the same kind as one (tokenised together, as one text), empty ones left out."""
    merged: list[Segment] = []
    for text, trained in segments:
        if not text:
            continue
        if merged and merged[-1][1] == trained:
            merged[-1] = (merged[-1][0] + text, trained)
        else:
            merged.append((text, trained))
    return merged


def _template_segments(tokenizer: Any, conversation: Conversation) -> list[Segment] | None:
    """The chat template's rendering, split at each assistant turn; None where it is not a growing prefix."""
    messages = [{"role": role, "content": text} for role, text in conversation]

    def render(upto: int, generation: bool) -> str:
        return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation)

    try:
        full = render(len(messages), False)
        segments: list[Segment] = []
        position = 0
        for index, (role, _) in enumerate(conversation):
            if role != "assistant":
                continue
            before = render(index, True) if index else ""
            through = full if index == len(messages) - 1 else render(index + 1, False)
            # A growing prefix: what came before, then this turn, then the rest (full.startswith(before) follows).
            if not (position <= len(before) < len(through) and through.startswith(before) and full.startswith(through)):
                return None
            segments += [(full[position : len(before)], False), (full[len(before) : len(through)], True)]
            position = len(through)
        segments.append((full[position:], False))
    except Exception:  # noqa: BLE001 (a template may raise anything jinja can: a role order it refuses, a missing key)
        return None
    return segments


def _default_segments(conversation: Conversation, eos: str) -> list[Segment]:
    segments: list[Segment] = []
    for role, text in conversation:
        header = DEFAULT_TEMPLATE[role]
        if role == "assistant":
            segments += [(header, False), (f"{text}{eos}", True)]
        else:
            segments.append((header.format(content=text), False))
    return segments


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation], templated: bool = True
) -> tuple[list[list[int]], list[list[bool]], int]:
    """Token ids of each conversation, which of them carry loss, and how many conversations were written with
    DEFAULT_TEMPLATE (or as plain text) instead of the chat template. Each span is tokenised on its own."""
    rendered = [render_segments(tokenizer, conversation, templated) for conversation in conversations]
    pieces = [text for segments, _ in rendered for text, _ in segments]
    piece_ids = tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else []
    ids, masks, at = [], [], 0
    for segments, _ in rendered:
        item: list[int] = []
        mask: list[bool] = []
        for _, trained in segments:
            item += piece_ids[at]
            mask += [trained] * len(piece_ids[at])
            at += 1
        ids.append(item)
        masks.append(mask)
    return ids, masks, sum(1 for _, by_template in rendered if not by_template)


def marked_text(segments: Sequence[Segment], start: str = "«", end: str = "»") -> str:
    """The rendered text with each trained span between markers, as the data preview shows it."""
    return "".join(f"{start}{text}{end}" if trained else text for text, trained in segments)
