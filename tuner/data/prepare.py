"""Training and held-out data: loaded, chat-formatted, loss on responses only, packed.

Hub datasets by default (through `datasets`); a local mirror (the layout of the project's shared/data) when
`--data-dir` or ADVISOR_DATA_DIR is given, and local files, are read by tuner.data.files.
"""

from __future__ import annotations

import bz2
import functools
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.packing import IGNORE_INDEX, PackedRows, pack
from tuner.data.sources import TASK_SOURCES, Source, instruction_output, local_pairs
from tuner.errors import AdvisorError
from tuner.settings import DataSettings, Packing

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

DATA_DIR_ENV = "ADVISOR_DATA_DIR"
MAX_EXAMPLES = 20_000
"""Examples kept after the deterministic shuffle: enough for any trial budget, cheap to tokenise."""

# General text for the forgetting term, kept apart from the items the evaluation scores:
# ARC-Easy (forgetting is scored on ARC-Challenge), and the tails of HellaSwag validation and
# WinoGrande dev, which a subset evaluation (the first N items) never reaches.
HELLASWAG_RESERVED_FROM = 9042
WINOGRANDE_RESERVED_FROM = 1067
GENERAL_HUB_DATASET = ("Salesforce/wikitext", "wikitext-103-raw-v1", "validation")


def resolve_data_dir(given: str | None) -> Path | None:
    """The local mirror: --data-dir, else ADVISOR_DATA_DIR, else None (load from the hub)."""
    value = given or os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    origin = "--data-dir" if given else DATA_DIR_ENV
    if not path.is_dir():
        raise AdvisorError(f"data directory not found: {path} (from {origin})")
    return path


def _load_hub(source: Source) -> datasets.Dataset:
    import datasets

    try:
        return datasets.load_dataset(source.location, source.config, split=source.split)
    except Exception as error:  # noqa: BLE001 (unreachable hub, unknown id, missing split)
        raise AdvisorError(
            f"cannot load dataset '{source.location}' from the Hugging Face hub ({_first_line(error)}); "
            f"give a local mirror with --data-dir or {DATA_DIR_ENV}"
        ) from None


def _first_line(error: BaseException) -> str:
    """The first line of the innermost cause: datasets wraps parse errors in a generic message."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def load_pairs(settings: DataSettings, data_dir: Path | None) -> datasets.Dataset:
    """The task's (prompt, response) pairs, shuffled deterministically and capped at MAX_EXAMPLES.

    Local files are read into memory, so a load leaves nothing in the `datasets` cache.
    """
    local = local_pairs(settings, data_dir)
    import datasets

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)  # errors come back as one AdvisorError line
    if local is not None:
        pairs = datasets.Dataset.from_dict({"prompt": local[0], "response": local[1]})
    elif settings.task == "custom":
        pairs = _hub_custom_pairs(settings)
    else:
        tables = []
        for source in TASK_SOURCES[settings.task]["hub"]:
            table = _load_hub(source)
            if source.keep is not None:
                table = table.filter(source.keep)
            try:
                tables.append(table.map(source.to_pair, remove_columns=table.column_names))
            except KeyError as missing:
                raise AdvisorError(f"dataset {source.location} has no column {missing}") from None
        pairs = datasets.concatenate_datasets(tables)
    pairs = pairs.shuffle(seed=settings.seed)
    return pairs.select(range(min(len(pairs), MAX_EXAMPLES)))


def pair_columns(settings: DataSettings, data_dir: Path | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """load_pairs' prompts and responses, read once per process while their files are unchanged."""
    if settings.task == "custom":
        files = [Path(str(settings.source)).expanduser()]
    else:
        files = [data_dir / source.location for source in TASK_SOURCES[settings.task]["mirror"]] if data_dir else []
    return _pair_columns(settings, data_dir, _stamps(files))


@functools.lru_cache(maxsize=4)
def _pair_columns(
    settings: DataSettings, data_dir: Path | None, _stamps: tuple[tuple[str, int, int], ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    columns = load_pairs(settings, data_dir)[:]  # whole columns at once: iterating a Dataset's rows is slow
    return tuple(columns["prompt"]), tuple(columns["response"])


def _hub_custom_pairs(settings: DataSettings) -> datasets.Dataset:
    location = str(settings.source)
    table = _load_hub(Source(location, instruction_output))
    columns = (settings.prompt_column, settings.response_column)
    missing = [column for column in columns if column not in table.column_names]
    if missing:
        raise AdvisorError(
            f"{location} has no column {', '.join(repr(c) for c in missing)}; its columns are "
            f"{', '.join(table.column_names)} (name them with --prompt-column and --response-column)"
        )
    if len(table) == 0:
        raise AdvisorError(f"{location} holds no rows")
    prompt_column, response_column = columns
    return table.map(
        lambda row: {"prompt": str(row[prompt_column]), "response": str(row[response_column])},
        remove_columns=table.column_names,
    )


def format_pair(tokenizer: PreTrainedTokenizerBase | None, prompt: str, response: str) -> tuple[str, str]:
    """The prompt text (up to where the answer starts) and the response text, through the chat template if any
    (without a tokenizer: the plain instruction format, as the app's preview shows it before a model loads).

    Encodings are cached (tuner.data.token_cache): a change to what this or encode_pair_ids produces bumps
    ENCODING_VERSION.
    """
    if getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": prompt}]
        prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": response}], tokenize=False)
        if full_text.startswith(prompt_text):
            return prompt_text, full_text[len(prompt_text) :]
    eos = getattr(tokenizer, "eos_token", None) or ""
    return f"### Instruction:\n{prompt}\n\n### Response:\n", f"{response}{eos}"


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str]
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and labels for each pair; prompt tokens carry no loss."""
    input_ids, prompt_lengths = encode_pair_ids(tokenizer, prompts, responses)
    return input_ids, [_labels(ids, prompt) for ids, prompt in zip(input_ids, prompt_lengths, strict=True)]


def encode_pair_ids(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str]
) -> tuple[list[list[int]], list[int]]:
    """Token ids for each pair (prompt then response) and how many of them are the prompt's."""
    texts = [format_pair(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    prompt_ids = tokenizer([t[0] for t in texts], add_special_tokens=False)["input_ids"]
    response_ids = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    return [p + r for p, r in zip(prompt_ids, response_ids, strict=True)], [len(p) for p in prompt_ids]


def _labels(input_ids: list[int], prompt_length: int) -> list[int]:
    """The loss targets of one pair's ids: none on the prompt."""
    return [IGNORE_INDEX] * prompt_length + input_ids[prompt_length:]


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Plain text documents as token ids ending in EOS, for language-model loss on every token."""
    eos = tokenizer.eos_token or ""
    return tokenizer([f"{text}{eos}" for text in texts], add_special_tokens=False)["input_ids"]


def _encoded_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """encode_texts through the token cache."""
    from tuner.data.token_cache import cached_encoding

    ids, _ = cached_encoding("general", (texts,), tokenizer, lambda: (encode_texts(tokenizer, texts), [0] * len(texts)))
    return ids


GENERAL_FILES = ("arc/ARC-Easy-Test.jsonl", "hellaswag/hellaswag_val_full.txt.bz2", "winogrande/dev.jsonl")
"""The mirror's files the general text comes from."""


def general_texts(data_dir: Path | None) -> list[str]:
    """Held-out general text for the forgetting term: the mirror's reserved items, else a hub corpus.

    Read once per process while its files are unchanged; each call gets its own list (callers shuffle it).
    """
    files = [data_dir / name for name in GENERAL_FILES] if data_dir is not None else []
    return list(_general_texts(data_dir, _stamps(files)))


def _stamps(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Each existing file's path, size and modification time: part of an in-memory key, so an edit reads afresh."""
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


@functools.lru_cache(maxsize=2)
def _general_texts(data_dir: Path | None, _stamps: tuple[tuple[str, int, int], ...]) -> tuple[str, ...]:
    return tuple(_read_general_texts(data_dir))


def _read_general_texts(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        name, config, split = GENERAL_HUB_DATASET
        table = _load_hub(Source(name, instruction_output, config=config, split=split))
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


Example = tuple[list[int], list[int]]
"""One tokenised example: input ids and labels (IGNORE_INDEX on the prompt)."""


def task_examples(
    settings: DataSettings, seq_len: int, tokenizer: PreTrainedTokenizerBase, data_dir: Path | None
) -> list[Example]:
    """The task's pairs in the shuffled order, encoded; those left without a loss token at seq_len are dropped."""
    from tuner.data.token_cache import cached_encoding

    prompts, responses = pair_columns(settings, data_dir)
    encode = functools.partial(encode_pair_ids, tokenizer, prompts, responses)
    input_ids, prompt_lengths = cached_encoding("pairs", (prompts, responses), tokenizer, encode)
    return [
        (ids, _labels(ids, prompt))
        for ids, prompt in zip(input_ids, prompt_lengths, strict=True)
        if prompt < min(seq_len, len(ids))  # a loss token within the first seq_len
    ]


def prepare_study_data(
    settings: DataSettings,
    packing: Packing,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: Path | None,
    train_examples: int | None = None,
) -> StudyData:
    """Load, format and pack the task data and the general text; split train / held-out deterministically."""
    examples = task_examples(settings, packing.seq_len, tokenizer, data_dir)
    return pack_study_data(settings, examples, packing, tokenizer, data_dir, train_examples)


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
        raise AdvisorError(
            f"{settings.where()} is too small: {len(examples)} usable examples give {len(train)} training rows of "
            f"{seq_len} tokens after a held-out set of {len(heldout)}; one batch needs {batch_size} "
            "(lower --batch-size or --seq-len, or give more data)"
        )
    texts = general_texts(data_dir)
    random.Random(settings.seed).shuffle(texts)  # mix the sources before taking the first rows
    general_ids = _encoded_texts(tokenizer, texts)
    # Each document's first token would be predicted from the previous document's end: no loss there.
    general_rows = pack(((ids, [IGNORE_INDEX, *ids[1:]]) for ids in general_ids), seq_len)
    general = general_rows.head(eval_rows)
    confirm_general = general_rows.rows(eval_rows, eval_rows + packing.confirm_rows) if confirm else None
    return StudyData(train, heldout, general, len(kept), held, confirm, confirm_general)


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
