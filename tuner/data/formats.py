"""The shapes people keep training data in, found from a table's columns and read into one form: conversations
(turns of role and text) or plain documents. Errors name the file, the line (or row) and what is wrong there.

Pure: no torch, no `datasets`, no tokenizer. Rendering and the loss mask are tuner.data.render's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.defaults import DATA_FORMATS
from tuner.errors import AdvisorError

FORMAT_CHOICES = DATA_FORMATS
"""What --format takes: 'auto' finds the format from the columns."""
FORMATS = DATA_FORMATS[1:]
"""Every format read: OpenAI-style `messages`, ShareGPT `conversations`, Alpaca, TRL's prompt/completion, two named
text columns (--prompt-column, --response-column) and plain `text` (continued pretraining)."""

FORMAT_NAMES = {
    "messages": "conversations (a messages list of role and content)",
    "sharegpt": "ShareGPT conversations (a conversations list of from and value)",
    "alpaca": "Alpaca (instruction, optional input, output)",
    "prompt-completion": "prompt/completion",
    "columns": "prompt/response columns",
    "text": "plain text",
}
"""How the summary names each format."""

EXAMPLES = {
    "messages": '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}',
    "sharegpt": '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}',
    "alpaca": '{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}',
    "prompt-completion": '{"prompt": "The capital of France is", "completion": " Paris."}',
    "columns": '{"prompt": "What is 2+2?", "response": "4"}',
    "text": '{"text": "Any document: the model learns every token of it."}',
}
"""One line of each format, for the README and the errors that list the formats."""

ROLES = ("system", "user", "assistant", "tool")
"""The roles a conversation's turns take."""
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function_response": "tool",
}
"""ShareGPT's `from` values (as axolotl and LLaMA-Factory read them) and the role each is."""

Turn = tuple[str, str]
"""A role and its text."""
Conversation = tuple[Turn, ...]


@dataclass(frozen=True)
class Records:
    """A dataset read into one form: conversations (every format but text) or documents (text)."""

    format: str
    """One of FORMATS."""
    conversations: tuple[Conversation, ...] = ()
    texts: tuple[str, ...] = ()
    templated: bool = True
    """Whether conversations are rendered with the chat template (False: prompt/completion given as plain text,
    which TRL trains as the prompt followed by the completion)."""
    skipped: int = 0
    """Rows left out because a field the format needs is empty or null."""
    note: str = ""
    """What else the detection saw (a column it did not use), for the summary."""

    def __len__(self) -> int:
        return len(self.texts) if self.format == "text" else len(self.conversations)

    def select(self, order: Sequence[int]) -> Records:
        """These records in the given order (a subset when `order` is shorter)."""
        if self.format == "text":
            return Records(self.format, texts=tuple(self.texts[i] for i in order), skipped=self.skipped, note=self.note)
        picked = tuple(self.conversations[i] for i in order)
        return Records(self.format, picked, templated=self.templated, skipped=self.skipped, note=self.note)


@dataclass(frozen=True)
class Table:
    """What a format reads: columns by name, and how an error names a row (its line in the file, or its index)."""

    name: str
    columns: dict[str, list[Any]]
    row_count: int
    where: Callable[[int], str]
    """The row at a 0-based index, as an error names it ('line 12', 'row 4')."""


def detect_format(table: Table, prompt_column: str = "prompt", response_column: str = "response") -> tuple[str, str]:
    """The format the table's columns hold, and a note on any other it could be read as; AdvisorError when none
    matches, or when rows hold different formats."""
    if (prompt_column, response_column) != ("prompt", "response"):  # columns named: what the user means
        missing = [name for name in (prompt_column, response_column) if name not in table.columns]
        if missing:
            raise AdvisorError(
                f"{table.name} has no column {', '.join(repr(name) for name in missing)}; its columns are "
                f"{', '.join(table.columns) or 'none'}"
            )
        return "columns", ""
    found = [name for name in FORMATS if _matches(name, table.columns, prompt_column, response_column)]
    structured = [name for name in found if name != "text"]
    if not found:
        raise AdvisorError(
            f"{table.name} holds none of the formats read: its columns are {', '.join(table.columns) or 'none'}; "
            f"expected messages, conversations, instruction/output, prompt/completion, {prompt_column}/"
            f"{response_column} or text (name other columns with --prompt-column and --response-column)"
        )
    _check_rows_agree(table, found, prompt_column, response_column)
    if len(structured) > 1:
        raise AdvisorError(f"{table.name} could be read as {' or '.join(structured)}: name one with --format")
    chosen = structured[0] if structured else "text"
    note = ""
    if chosen != "text" and "text" in found:
        note = "its text column is not used (--format text trains on it as continued pretraining)"
    return chosen, note


_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt-completion": ("prompt", "completion"),
    "text": ("text",),
}


def _fields(name: str, prompt_column: str, response_column: str) -> tuple[str, ...]:
    return (prompt_column, response_column) if name == "columns" else _FIELDS[name]


def _matches(name: str, columns: dict[str, list[Any]], prompt_column: str, response_column: str) -> bool:
    if name == "sharegpt" and "conversations" in columns:
        return _turn_keys(columns["conversations"]) != {"role", "content"}
    if name == "messages" and "messages" not in columns and "conversations" in columns:
        return _turn_keys(columns["conversations"]) == {"role", "content"}
    if name == "columns" and (prompt_column, response_column) == ("prompt", "completion"):
        return False  # that is prompt-completion
    return all(field in columns for field in _fields(name, prompt_column, response_column))


def _turn_keys(values: list[Any]) -> set[str]:
    """The keys of the first turn in a conversations column ({role, content} where it has both: OpenAI's turns under
    ShareGPT's column name)."""
    for value in values:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            keys = set(value[0])
            return {"role", "content"} if {"role", "content"} <= keys else keys
    return set()


def _check_rows_agree(table: Table, found: list[str], prompt_column: str, response_column: str) -> None:
    """One format per file: a row that holds only another format's fields is named with the first row's format."""
    if len(found) < 2:
        return
    reference: tuple[int, set[str]] | None = None
    for index in range(table.row_count):
        held = {
            name
            for name in found
            if all(table.columns[field][index] is not None for field in _fields(name, prompt_column, response_column))
        }
        if not held:
            continue
        if reference is None:
            reference = (index, held)
        elif not held & reference[1]:
            raise AdvisorError(
                f"{table.name}: {table.where(index)}: holds {' and '.join(sorted(held))}, not "
                f"{' and '.join(sorted(reference[1]))} like {table.where(reference[0])}: one format per file"
            )


def read_records(
    table: Table, fmt: str = "auto", prompt_column: str = "prompt", response_column: str = "response"
) -> Records:
    """The table's rows in the format named (or found), in row order; rows whose needed fields are empty or null are
    left out and counted. AdvisorError, naming the row, for a row that cannot be read."""
    note = ""
    if fmt == "auto":
        fmt, note = detect_format(table, prompt_column, response_column)
    elif fmt not in FORMATS:
        raise AdvisorError(f"unknown data format {fmt!r} (known: {', '.join(FORMAT_CHOICES)})")
    else:
        needed = _fields(fmt, prompt_column, response_column)
        if fmt == "messages" and "messages" not in table.columns and "conversations" in table.columns:
            needed = ("conversations",)
        missing = [field for field in needed if field not in table.columns]
        if missing:
            raise AdvisorError(
                f"{table.name} has no column {', '.join(repr(m) for m in missing)} for --format {fmt}; its columns "
                f"are {', '.join(table.columns) or 'none'}"
            )
    reader = _READERS[fmt]
    items: list[Any] = []
    skipped = 0
    for index in range(table.row_count):
        item = reader(table, index, prompt_column, response_column)
        if item is None:
            skipped += 1
        else:
            items.append(item)
    if not items:
        raise AdvisorError(f"{table.name} has no usable rows: every one of its {table.row_count:,} rows {_EMPTY[fmt]}")
    if fmt == "text":
        return Records(fmt, texts=tuple(items), skipped=skipped, note=note)
    return Records(fmt, tuple(items), templated=_templated(fmt, table), skipped=skipped, note=note)


_EMPTY = {
    "messages": "has an empty messages list",
    "sharegpt": "has an empty conversations list",
    "alpaca": "has an empty or null instruction or output",
    "prompt-completion": "has an empty or null prompt or completion",
    "columns": "has an empty or null prompt or response",
    "text": "has an empty or null text",
}


def _templated(fmt: str, table: Table) -> bool:
    """prompt/completion as plain strings is trained as raw text (as TRL does); every other format is a chat."""
    if fmt != "prompt-completion":
        return True
    return any(isinstance(value, list) for value in table.columns["prompt"] if value is not None)


def _text(value: Any) -> str | None:
    """A cell as text (numbers written out, as the two-column format always read them); None when empty."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _read_columns(table: Table, index: int, prompt_column: str, response_column: str) -> Conversation | None:
    prompt, response = _text(table.columns[prompt_column][index]), _text(table.columns[response_column][index])
    if prompt is None or response is None:
        return None
    return (("user", prompt), ("assistant", response))


def _read_alpaca(table: Table, index: int, _prompt: str, _response: str) -> Conversation | None:
    instruction, output = _text(table.columns["instruction"][index]), _text(table.columns["output"][index])
    if instruction is None or output is None:
        return None
    extra = _text(table.columns["input"][index]) if "input" in table.columns else None
    system = _text(table.columns["system"][index]) if "system" in table.columns else None
    user = instruction + (f"\n\n{extra.strip()}" if extra else "")
    return ((("system", system),) if system else ()) + (("user", user), ("assistant", output))


def _read_text(table: Table, index: int, _prompt: str, _response: str) -> str | None:
    return _text(table.columns["text"][index])


def _read_messages(table: Table, index: int, _prompt: str, _response: str) -> Conversation | None:
    column = "messages" if "messages" in table.columns else "conversations"
    return _conversation(table, index, table.columns[column][index], "role", "content", None)


def _read_sharegpt(table: Table, index: int, _prompt: str, _response: str) -> Conversation | None:
    return _conversation(table, index, table.columns["conversations"][index], "from", "value", SHAREGPT_ROLES)


def _read_prompt_completion(table: Table, index: int, _prompt: str, _response: str) -> Conversation | None:
    prompt, completion = table.columns["prompt"][index], table.columns["completion"][index]
    if prompt is None or completion is None:
        return None
    if isinstance(prompt, list) or isinstance(completion, list):
        where = f"{table.name}: {table.where(index)}"
        if not (isinstance(prompt, list) and isinstance(completion, list)):
            raise AdvisorError(f"{where}: prompt and completion must both be text or both be message lists")
        turns = _turns(where, prompt, "role", "content", None, "prompt") + _turns(
            where, completion, "role", "content", None, "completion"
        )
        if not any(role == "assistant" for role, _ in turns[len(prompt) :]):
            raise AdvisorError(f"{where}: the completion has no assistant turn: nothing to learn")
        return turns
    prompt_text, completion_text = _text(prompt), _text(completion)
    if prompt_text is None or completion_text is None:
        return None
    return (("user", prompt_text), ("assistant", completion_text))


def _conversation(
    table: Table, index: int, value: Any, role_key: str, text_key: str, roles: dict[str, str] | None
) -> Conversation | None:
    where = f"{table.name}: {table.where(index)}"
    if isinstance(value, str) and value.lstrip().startswith("["):  # a CSV cell holds the turns as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise AdvisorError(
                f"{where}: the conversation is not valid JSON: {error.msg} (column {error.colno})"
            ) from None
    if value is None or (isinstance(value, list) and not value):
        return None
    turns = _turns(where, value, role_key, text_key, roles, "conversation")
    if not any(role == "assistant" for role, _ in turns):
        raise AdvisorError(f"{where}: the conversation has no assistant turn: nothing to learn")
    return turns


def _turns(
    where: str, value: Any, role_key: str, text_key: str, roles: dict[str, str] | None, what: str
) -> Conversation:
    if not isinstance(value, list):
        raise AdvisorError(f"{where}: the {what} is {_kind(value)}, not a list of turns")
    known = roles or {role: role for role in ROLES}
    turns = []
    for number, turn in enumerate(value, start=1):
        if not isinstance(turn, dict):
            raise AdvisorError(f"{where}: turn {number} of the {what} is {_kind(turn)}, not an object")
        if role_key not in turn:
            keys = ", ".join(turn)
            raise AdvisorError(f"{where}: turn {number} of the {what} has no {role_key!r} (its keys: {keys})")
        role = turn[role_key]
        if role not in known:
            raise AdvisorError(f"{where}: turn {number} has the unknown role {role!r} (known: {', '.join(known)})")
        text = _turn_text(turn.get(text_key))
        if text is None:
            raise AdvisorError(
                f"{where}: turn {number} ({role}) has no text in {text_key!r} "
                f"(found {_kind(turn.get(text_key))}; tool calls and images are not read)"
            )
        turns.append((known[role], text))
    return tuple(turns)


def _turn_text(value: Any) -> str | None:
    """A turn's text: a string, or a list of OpenAI content parts that are all text (joined)."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            for part in value
        )
    ):
        return "".join(part["text"] for part in value)
    return None


_JSON_KINDS = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    dict: "an object",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list) and not value:
        return "an empty list"
    return _JSON_KINDS.get(type(value), type(value).__name__)


_READERS: dict[str, Callable[[Table, int, str, str], Any]] = {
    "messages": _read_messages,
    "sharegpt": _read_sharegpt,
    "alpaca": _read_alpaca,
    "prompt-completion": _read_prompt_completion,
    "columns": _read_columns,
    "text": _read_text,
}
