"""What an export says of the preset's data: its format and which tokens carry the loss (pure).

A study's preset knows its data's format (tuner.data.formats.FORMATS) and regime (tuner.defaults.REGIMES); each
export module sets them in its tool's own dataset keys, in the words shared here. A preset that knows no format
(data_format None, as every shipped one) exports as it always has: each tool's own default reader.
"""

from __future__ import annotations

from advisor.presets import Preset
from tuner.data.formats import FORMAT_NAMES, SHAREGPT_ROLES

CONVERSATIONS = ("messages", "sharegpt")
"""Formats holding a whole conversation per row: a list of turns."""
PAIRS = ("alpaca", "columns", "prompt-completion")
"""Formats holding one prompt and one answer per row."""
PAIR_COLUMNS = {
    "alpaca": ("instruction", "output"),
    "columns": ("prompt", "response"),
    "prompt-completion": ("prompt", "completion"),
}
"""Each pair format's prompt and answer columns (columns: --prompt-column and --response-column's defaults)."""
LOSS_MODES = ("responses", "all")
"""Which tokens carry the loss, as scripts/validate_exports.py compares it: the answers (the assistant turns, the
output, the response or the completion) or every token."""


def every_token(preset: Preset) -> bool:
    """Whether every token carries the loss (continued pretraining), not the answers only."""
    return preset.regime == "cpt"


def loss_mode(preset: Preset) -> str:
    """'all' for continued pretraining, else 'responses' (see LOSS_MODES)."""
    return "all" if every_token(preset) else "responses"


def answer(preset: Preset) -> str:
    """What instruction tuning trains on, in words: the assistant turns, or the pair's answer column."""
    if preset.data_format in PAIR_COLUMNS:
        return f"the {PAIR_COLUMNS[preset.data_format][1]}"
    return "the assistant turns"


def loss_text(preset: Preset) -> str:
    """Which tokens carry the loss, in words."""
    if every_token(preset):
        return "every token (continued pretraining)"
    return f"{answer(preset)} only (instruction tuning)"


def data_lines(preset: Preset) -> list[str]:
    """The header's line on the data: its format and where the loss is taken (none for an unknown format)."""
    if preset.data_format is None:
        return []
    columns = " (the default --prompt-column and --response-column)" if preset.data_format == "columns" else ""
    return [
        f"Data: {FORMAT_NAMES[preset.data_format]}{columns}, LoRA Advisor's {preset.data_format!r} format; the loss "
        f"on {loss_text(preset)}."
    ]


def sharegpt_roles() -> dict[str, list[str]]:
    """ShareGPT's `from` values by the role each is (tuner.data.formats.SHAREGPT_ROLES, turned round)."""
    roles: dict[str, list[str]] = {}
    for value, role in SHAREGPT_ROLES.items():
        roles.setdefault(role, []).append(value)
    return roles
