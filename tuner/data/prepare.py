"""A study's data packed once: the task's examples (tuner.data.encode) split into held-out, train and confirm rows,
and the general text the forgetting term is measured on."""

from __future__ import annotations

import bz2
import functools
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.encode import Example, ExampleCounts, counted_examples, encode_texts
from tuner.data.load import load_hub, stamps
from tuner.data.packing import IGNORE_INDEX, PackedRows, pack
from tuner.data.sources import Source, instruction_output
from tuner.errors import AdvisorError
from tuner.settings import DataSettings, Packing

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tuner.data.token_cache import Encoded

# General text for the forgetting term, kept apart from the items the evaluation scores:
# ARC-Easy (forgetting is scored on ARC-Challenge), and the tails of HellaSwag validation and
# WinoGrande dev, which a subset evaluation (the first N items) never reaches.
HELLASWAG_RESERVED_FROM = 9042
WINOGRANDE_RESERVED_FROM = 1067
GENERAL_HUB_DATASET = ("Salesforce/wikitext", "wikitext-103-raw-v1", "validation")


def _encoded_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """encode_texts through the token cache."""
    from tuner.data.token_cache import cached_encoding

    def encode() -> Encoded:
        ids = encode_texts(tokenizer, texts)
        return ids, [[True] * len(item) for item in ids]

    return cached_encoding("general", (texts,), tokenizer, encode)[0]


GENERAL_FILES = ("arc/ARC-Easy-Test.jsonl", "hellaswag/hellaswag_val_full.txt.bz2", "winogrande/dev.jsonl")
"""The mirror's files the general text comes from."""


def general_texts(data_dir: Path | None) -> list[str]:
    """Held-out general text for the forgetting term: the mirror's reserved items, else a hub corpus.

    Read once per process while its files are unchanged; each call gets its own list (callers shuffle it).
    """
    files = [data_dir / name for name in GENERAL_FILES] if data_dir is not None else []
    return list(_general_texts(data_dir, stamps(files)))


@functools.lru_cache(maxsize=2)
def _general_texts(data_dir: Path | None, _stamps: tuple[tuple[str, int, int], ...]) -> tuple[str, ...]:
    return tuple(_read_general_texts(data_dir))


def _read_general_texts(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        name, config, split = GENERAL_HUB_DATASET
        table = load_hub(Source(name, instruction_output, config=config, split=split))
        return [line.strip() for line in table["text"] if len(line.strip()) > 200]
    texts: list[str] = []
    arc, hellaswag, winogrande = (data_dir / name for name in GENERAL_FILES)
    for path in (arc, hellaswag, winogrande):
        if not path.is_file():
            raise AdvisorError(f"general-text file not found: {path} (needed for the forgetting term)")
    for line in arc.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        answer = next(c["text"] for c in item["question"]["choices"] if c["label"] == item["answerKey"])
        texts.append(f"{item['question']['stem']} {answer}")
    lines = bz2.decompress(hellaswag.read_bytes()).decode("utf-8").splitlines()
    for task in range(HELLASWAG_RESERVED_FROM, len(lines) // 6):
        context, gold, *endings = lines[task * 6 : task * 6 + 6]
        texts.append(f"{context} {endings[int(gold)]}")
    for index, line in enumerate(winogrande.read_text(encoding="utf-8").splitlines()):
        if index >= WINOGRANDE_RESERVED_FROM:
            item = json.loads(line)
            texts.append(item["sentence"].replace("_", item[f"option{item['answer']}"]))
    return texts


@dataclass(frozen=True)
class StudyData:
    """Everything the trials train and evaluate on, tokenised and packed once per study."""

    train: PackedRows
    heldout: PackedRows
    general: PackedRows
    train_examples: int
    heldout_examples: int
    confirm: PackedRows | None = None
    """Target rows from the end of the examples, never trained on nor ranked by: the best trials are re-measured
    there (None: no confirm set was asked for, or the data was too small to spare one)."""
    confirm_general: PackedRows | None = None
    """General-text rows after the held-out ones, for the confirm set's forgetting term."""
    counts: ExampleCounts | None = None
    """What became of the task's examples at the row length (None: packed from examples given directly)."""


def prepare_study_data(
    settings: DataSettings,
    packing: Packing,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: Path | None,
    train_examples: int | None = None,
) -> StudyData:
    """Load, format and pack the task data and the general text; split train / held-out deterministically."""
    examples, counts = counted_examples(settings, packing.seq_len, tokenizer, data_dir)
    data = pack_study_data(settings, examples, packing, tokenizer, data_dir, train_examples)
    return replace(data, counts=counts)


def pack_study_data(
    settings: DataSettings,
    examples: list[Example],
    packing: Packing,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: Path | None,
    train_examples: int | None = None,
) -> StudyData:
    """Split encoded examples into held-out (the first ones) and train (the next `train_examples`, default all),
    pack both, and add the general text."""
    seq_len, batch_size, eval_rows = packing.seq_len, packing.batch_size, packing.eval_rows
    # The held-out set is the first examples of the shuffled data, enough to fill its rows.
    needed = (eval_rows + 1) * seq_len
    held, held_tokens = 0, 0
    while held < len(examples) and held_tokens < needed:
        held_tokens += min(len(examples[held][0]), seq_len)
        held += 1
    heldout = pack(examples[:held], seq_len).head(eval_rows)
    rest = examples[held:]
    spared = _confirm_examples(rest, packing) if train_examples is None else 0
    confirm = pack(rest[len(rest) - spared :], seq_len).head(packing.confirm_rows) if spared else None
    kept = rest[: len(rest) - spared] if train_examples is None else rest[:train_examples]
    train = pack(kept, seq_len)
    if len(heldout) < 1 or len(train) < batch_size:
        rows = f"{len(train)} training row{'s' * (len(train) != 1)} of {seq_len} tokens"
        if train_examples is not None and len(heldout) >= 1:
            raise AdvisorError(
                f"{train_examples} training example{'s' * (train_examples != 1)} give {rows}; one batch needs "
                f"{batch_size}: train on more examples (of {len(rest)})"
            )
        raise AdvisorError(
            f"{settings.where()} is too small: {len(examples)} usable examples give {rows} after a held-out set of "
            f"{len(heldout)}; one batch needs {batch_size} {CLI_ROWS_ADVICE}"
        )
    texts = general_texts(data_dir)
    random.Random(settings.seed).shuffle(texts)  # mix the sources before taking the first rows
    general_ids = _encoded_texts(tokenizer, texts)
    # Each document's first token would be predicted from the previous document's end: no loss there.
    general_rows = pack(((ids, [IGNORE_INDEX, *ids[1:]]) for ids in general_ids), seq_len)
    general = general_rows.head(eval_rows)
    confirm_general = general_rows.rows(eval_rows, eval_rows + packing.confirm_rows) if confirm else None
    return StudyData(train, heldout, general, len(kept), held, confirm, confirm_general)


CLI_ROWS_ADVICE = "(lower --batch-size or --seq-len, or give more data)"
"""What the CLI can change when the data gives too few rows (the app words its own way on)."""
CONFIRM_SHARE = 4
"""A confirm set takes at most 1 / CONFIRM_SHARE of the examples left after the held-out set."""


def _confirm_examples(rest: list[Example], packing: Packing) -> int:
    """How many examples from the end of `rest` fill the confirm rows (at most a quarter of them; 0 if they
    would not fill one row)."""
    if packing.confirm_rows < 1:
        return 0
    needed, cap = (packing.confirm_rows + 1) * packing.seq_len, len(rest) // CONFIRM_SHARE
    count, tokens = 0, 0
    while count < cap and tokens < needed:
        count += 1
        tokens += min(len(rest[-count][0]), packing.seq_len)
    return count if tokens >= packing.seq_len else 0
