"""Examples as token ids and labels: conversations rendered with the chat template and loss on the assistant turns
(instruction tuning), or every token of the text (continued pretraining); what became of them at a row length.

Encodings are cached (tuner.data.token_cache): a change to what this module or tuner.data.render produces from the
same texts bumps ENCODING_VERSION.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.formats import Records
from tuner.data.load import task_records
from tuner.data.packing import IGNORE_INDEX
from tuner.data.render import encode_conversations, render_segments
from tuner.errors import AdvisorError
from tuner.settings import DataSettings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tuner.data.token_cache import Encoded

Example = tuple[list[int], list[int]]
"""One tokenised example: input ids and labels (IGNORE_INDEX on the prompt)."""


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str]
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and labels for each (prompt, response) pair; only the response's tokens carry loss."""
    conversations = [(("user", p), ("assistant", r)) for p, r in zip(prompts, responses, strict=True)]
    input_ids, masks, _ = encode_conversations(tokenizer, conversations)
    return input_ids, [_labels(ids, mask) for ids, mask in zip(input_ids, masks, strict=True)]


def _labels(input_ids: list[int], trained: list[bool]) -> list[int]:
    """The loss targets of one example's ids: IGNORE_INDEX where a token carries no loss."""
    first = trained.index(True) if True in trained else len(trained)
    if trained.count(True) == len(trained) - first:  # one answer at the end (every pair): no loop in Python
        return [IGNORE_INDEX] * first + input_ids[first:]
    return [token if flag else IGNORE_INDEX for token, flag in zip(input_ids, trained, strict=True)]


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Plain text documents as token ids ending in EOS, for language-model loss on every token."""
    eos = tokenizer.eos_token or ""
    return tokenizer([f"{text}{eos}" for text in texts], add_special_tokens=False)["input_ids"]


DATA_FILE = "data.json"
"""A study's record of its data (ExampleCounts as JSON) in its run directory: the format found and the regime,
which an export of its recommendation sets in each tool's own dataset keys."""


@dataclass(frozen=True)
class ExampleCounts:
    """What became of the examples at a row length: kept, cut, split or dropped, and the tokens that carry loss."""

    format: str
    regime: str
    examples: int
    """Examples read (after the cap of MAX_EXAMPLES)."""
    skipped: int
    """Rows of the file left out for an empty or null field."""
    kept: int
    """Examples that train (instruction tuning), or row-length pieces of the documents (continued pretraining)."""
    dropped: int
    """Examples with no trained token in their first seq_len tokens (instruction tuning): left out."""
    truncated: int
    """Examples cut at seq_len (instruction tuning), or documents split into pieces (continued pretraining)."""
    tokens: int
    trained_tokens: int
    default_template: int
    """Conversations written in the stated default format, not the model's chat template."""
    templated: bool = True
    """False: prompt/completion as plain text, the prompt followed by the completion (as TRL trains it)."""


def regime_of(settings: DataSettings, records: Records) -> str:
    """The regime asked for, else continued pretraining for plain text and instruction tuning otherwise."""
    if settings.regime == "ift" and records.format == "text":
        raise AdvisorError(
            f"{settings.where()} is plain text, with no responses to learn: --regime ift needs conversations, "
            "Alpaca, prompt/completion or prompt/response rows"
        )
    return settings.regime or ("cpt" if records.format == "text" else "ift")


def encode_records(tokenizer: PreTrainedTokenizerBase, records: Records) -> tuple[Encoded, int]:
    """Token ids and loss flags of each record (through the token cache), and how many conversations were written
    in the default format."""
    from tuner.data.token_cache import cached_encoding

    if records.format == "text":
        texts = list(records.texts)

        def encode_text() -> Encoded:
            ids = encode_texts(tokenizer, texts)
            return ids, [[True] * len(item) for item in ids]

        return cached_encoding("text", (texts,), tokenizer, encode_text), 0
    untemplated = [0]

    def encode_chat() -> Encoded:
        ids, masks, untemplated[0] = encode_conversations(tokenizer, records.conversations, records.templated)
        return ids, masks

    key = [json.dumps(records.conversations, ensure_ascii=False)]  # one string: the digest of every turn in order
    kind = "chat" if records.templated else "completion"
    encoded = cached_encoding(kind, (key,), tokenizer, encode_chat)
    if not records.templated:
        return encoded, 0
    if untemplated[0] == 0 and records.conversations:
        _, by_template = render_segments(tokenizer, records.conversations[0])
        untemplated[0] = 0 if by_template else -1  # read from the cache: the first conversation says which
    return encoded, untemplated[0]


def counted_examples(
    settings: DataSettings, seq_len: int, tokenizer: PreTrainedTokenizerBase, data_dir: Path | None
) -> tuple[list[Example], ExampleCounts]:
    """The task's examples in the shuffled order, encoded, and what became of them at `seq_len`.

    Instruction tuning: an example longer than a row is cut at seq_len; one left without a trained token in its
    first seq_len tokens is dropped. Continued pretraining: every token trains, and a document longer than a row
    is split into row-length pieces (each piece's first token carries no loss: nothing before it is seen).
    """
    records = task_records(settings, data_dir)
    regime = regime_of(settings, records)
    (input_ids, masks), untemplated = encode_records(tokenizer, records)
    examples: list[Example] = []
    dropped = truncated = trained = 0
    for ids, mask in zip(input_ids, masks, strict=True):
        if regime == "cpt":
            truncated += len(ids) > seq_len
            for start in range(0, len(ids), seq_len):
                piece = ids[start : start + seq_len]
                examples.append((piece, [IGNORE_INDEX, *piece[1:]]))
                trained += len(piece) - 1
            continue
        first = mask.index(True) if True in mask else len(ids)
        if first >= min(seq_len, len(ids)):
            dropped += 1
            continue
        truncated += len(ids) > seq_len
        trained += mask[:seq_len].count(True)
        examples.append((ids, _labels(ids, mask)))
    tokens = sum(min(len(ids), seq_len) for ids, _ in examples)
    counts = ExampleCounts(
        records.format,
        regime,
        len(records),
        records.skipped,
        len(examples),
        dropped,
        truncated,
        tokens,
        trained,
        len(records) if untemplated < 0 else untemplated,
        records.templated,
    )
    return examples, counts


def task_examples(
    settings: DataSettings, seq_len: int, tokenizer: PreTrainedTokenizerBase, data_dir: Path | None
) -> list[Example]:
    """The task's examples in the shuffled order, encoded, by counted_examples' rules."""
    return counted_examples(settings, seq_len, tokenizer, data_dir)[0]
