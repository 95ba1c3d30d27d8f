"""What an export says of the preset's data: its format and which tokens carry the loss (pure).

A study's preset knows its data's format (tuner.data.formats.FORMATS) and regime (tuner.defaults.REGIMES); each
export module sets them in its tool's own dataset keys, in the words shared here. A preset that knows no format
(data_format None, as every shipped one) exports as it always has: each tool's own default reader.
"""

from __future__ import annotations

from collections.abc import Mapping

from advisor.presets import DEFAULT_COLUMNS, Preset
from tuner.data.formats import FORMAT_NAMES, SHAREGPT_ROLES

CONVERSATIONS = ("messages", "sharegpt")
"""Formats holding a whole conversation per row: a list of turns."""
PAIRS = ("alpaca", "columns", "prompt-completion")
"""Formats holding one prompt and one answer per row."""
PAIR_COLUMNS = {
    "alpaca": ("instruction", "output"),
    "columns": DEFAULT_COLUMNS,
    "prompt-completion": ("prompt", "completion"),
}
"""Each pair format's prompt and answer columns (columns: --prompt-column and --response-column's defaults, where
the preset names none: see pair_columns)."""
LOSS_MODES = ("responses", "all")
"""Which tokens carry the loss, as scripts/validate_exports.py compares it: the answers (the assistant turns, the
output, the response or the completion) or every token."""


def every_token(preset: Preset) -> bool:
    """Whether every token carries the loss (continued pretraining), not the answers only."""
    return preset.regime == "cpt"


def loss_mode(preset: Preset) -> str:
    """'all' for continued pretraining, else 'responses' (see LOSS_MODES)."""
    return "all" if every_token(preset) else "responses"


def pair_columns(preset: Preset) -> tuple[str, str]:
    """The prompt and answer columns of the preset's pair format: the study's own names for the columns format where
    it named them, else the format's (PAIR_COLUMNS)."""
    if preset.data_format == "columns" and preset.columns is not None:
        return preset.columns
    return PAIR_COLUMNS[preset.data_format or ""]


def named_columns(preset: Preset) -> bool:
    """Whether the preset's columns format names columns of its own, not the defaults."""
    return preset.data_format == "columns" and pair_columns(preset) != DEFAULT_COLUMNS


def columns_origin(preset: Preset) -> str:
    """Where the columns format's names in an export come from, in words: the study's, or defaults to replace."""
    return (
        "the study's --prompt-column and --response-column"
        if named_columns(preset)
        else "write your column names there"
    )


def answer(preset: Preset) -> str:
    """What instruction tuning trains on, in words: the assistant turns, or the pair's answer column."""
    if preset.data_format in PAIR_COLUMNS:
        return f"the {pair_columns(preset)[1]}"
    return "the assistant turns"


def loss_text(preset: Preset) -> str:
    """Which tokens carry the loss, in words."""
    if every_token(preset):
        return "every token (continued pretraining)"
    return f"{answer(preset)} only (instruction tuning)"


def format_name(preset: Preset) -> str:
    """The preset's data format in words (tuner.data.formats.FORMAT_NAMES), the columns format's with its names."""
    if named_columns(preset):
        return "{}/{} columns".format(*pair_columns(preset))
    return FORMAT_NAMES[preset.data_format or ""]


def data_lines(preset: Preset) -> list[str]:
    """The header's line on the data: its format and where the loss is taken (none for an unknown format)."""
    if preset.data_format is None:
        return []
    columns = " (the default --prompt-column and --response-column)" if preset.data_format == "columns" else ""
    if named_columns(preset):
        columns = " (the study's --prompt-column and --response-column)"
    fmt = f"LoRA Advisor's {preset.data_format!r} format"
    return [f"Data: {format_name(preset)}{columns}, {fmt}; the loss on {loss_text(preset)}."]


def format_note(notes: Mapping[str, str], preset: Preset) -> str:
    """A tool's note on the preset's data format; the columns format's is a template, filled with the column names
    ({prompt}, {response}; {PROMPT}, {RESPONSE} for a row's values) and where they come from ({origin})."""
    text = notes[preset.data_format or ""]
    if preset.data_format != "columns":
        return text
    prompt, response = pair_columns(preset)
    return text.format(
        prompt=prompt,
        response=response,
        PROMPT=prompt.upper(),
        RESPONSE=response.upper(),
        origin=columns_origin(preset),
    )


def sharegpt_roles() -> dict[str, list[str]]:
    """ShareGPT's `from` values by the role each is (tuner.data.formats.SHAREGPT_ROLES, turned round)."""
    roles: dict[str, list[str]] = {}
    for value, role in SHAREGPT_ROLES.items():
        roles.setdefault(role, []).append(value)
    return roles
