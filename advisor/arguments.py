"""The argparse types of the command line (each refuses a value no run can use, in one line, before anything loads)
and the options every command that loads a model shares."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from advisor.flags import option
from tuner.models.load import DEFAULT_MODEL


def probability(text: str) -> float:
    """A number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def rate(text: str) -> float:
    """A learning rate: above 0 and below 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive_number(text: str) -> float:
    """A number above 0 (0 is not a default: the option is left out for that)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative(text: str) -> int:
    """A whole number, 0 or more (for options where 0 means something: no scoring)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive(text: str) -> int:
    """A whole number, 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def size(most: int) -> Callable[[str], int]:
    """A whole number from 1 to MOST (a batch or a row length: see tuner.defaults.MAX_BATCH_SIZE, MAX_SEQ_LEN)."""

    def whole_number(text: str) -> int:
        value = int(text)
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"must be between 1 and {most:,}, got {text}")
        return value

    return whole_number


@dataclass(frozen=True, kw_only=True)
class ModelArgs:
    """The options of every command that loads a model (a command's record adds its own fields)."""

    model: str = DEFAULT_MODEL
    """built-in name, hub id, local directory or .gguf file"""
    data_dir: str | None = option(None, shown_default="$ADVISOR_DATA_DIR, else the hub")
    """local dataset mirror"""
