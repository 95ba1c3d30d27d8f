"""The full-run form's fields checked as they are typed (pure): epochs, training examples and items per benchmark,
each within what the recipe, the data and the benchmarks allow, with what is wrong in words."""

from __future__ import annotations

import math

from tuner.records import DataSize
from tuner.settings import TrainingRecipe

MAX_EPOCHS = 100
"""The most epochs the form takes (the paper trains LoRA for 1 to 16)."""


def optional_count(
    text: str, what: str, most: int | None = None, empty: str = "all", least: tuple[int, str] = (1, "")
) -> int | None:
    """A whole number from `least` (its bound, and why) to `most` from an input, None when it is left empty (which
    means `empty`); ValueError saying which field is wrong and what it takes."""
    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{what}: a whole number of at least 1, or empty for {empty}; got {text.strip()!r}")
    if int(text) < least[0]:
        raise ValueError(f"{what}: at least {least[0]:,}{least[1]} (empty for {empty}); got {int(text):,}")
    if most is not None and int(text) > most:
        raise ValueError(f"{what}: at most {most:,} (empty for {empty}); got {int(text):,}")
    return int(text)


def run_form_values(
    epochs: str, examples: str, items: str, data: DataSize | None, recipe: TrainingRecipe
) -> tuple[int | None, int | None, int | None]:
    """The form's epochs, training examples and items per benchmark (None: the recipe's, all, all): epochs up to
    MAX_EPOCHS; examples enough for one batch of packed rows at the data's mean length and no more than the data
    holds (where the study recorded its size)."""
    available = data.train_examples if data is not None and data.train_examples else None
    least = (1, "")
    if data is not None and available and data.train_tokens:
        mean = min(data.train_tokens / available, recipe.seq_len)
        batch = f" for one batch of {recipe.batch_size} rows of {recipe.seq_len} tokens"
        least = (math.ceil(recipe.batch_size * recipe.seq_len / mean), batch)
    return (
        optional_count(epochs, "Epochs", MAX_EPOCHS, f"{recipe.epochs}"),
        optional_count(examples, "Training examples", available, least=least),
        optional_count(items, "Items per benchmark"),
    )
