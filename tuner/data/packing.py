"""Sequence packing: whole rows of real tokens, no padding, attention kept inside each example (pure numpy)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100
"""Label value that carries no loss (the prompt, in instruction tuning)."""


@dataclass(frozen=True)
class PackedRows:
    """Rows of `seq_len` tokens; `position_ids` restart at 0 where an example starts.

    transformers turns restarting position ids into a block-diagonal causal mask, so no example
    attends to its neighbour in the row. An example that runs past a row's end goes on in the next
    row (its positions carry on), as in the usual concatenate-and-chunk packing.
    """

    input_ids: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    def tokens(self) -> int:
        """Every token in the rows (all of them real)."""
        return int(self.input_ids.size)

    def label_tokens(self) -> int:
        """Tokens that carry loss."""
        return int((self.labels != IGNORE_INDEX).sum())

    def head(self, rows: int) -> PackedRows:
        """The first `rows` rows."""
        return self.rows(0, rows)

    def rows(self, start: int, stop: int) -> PackedRows:
        """Rows `start` to `stop` (exclusive)."""
        return PackedRows(self.input_ids[start:stop], self.labels[start:stop], self.position_ids[start:stop])


def pack(examples: Iterable[tuple[Sequence[int], Sequence[int]]], seq_len: int) -> PackedRows:
    """Concatenate (input_ids, labels) examples, each cut to `seq_len`, into full rows.

    The last partial row is dropped: no row is padded.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    ids_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    position_parts: list[np.ndarray] = []
    for input_ids, labels in examples:
        if len(input_ids) != len(labels):
            raise ValueError(f"an example has {len(input_ids)} tokens but {len(labels)} labels")
        length = min(len(input_ids), seq_len)
        if length == 0:
            continue
        ids_parts.append(np.asarray(input_ids[:length], dtype=np.int64))
        label_parts.append(np.asarray(labels[:length], dtype=np.int64))
        position_parts.append(np.arange(length, dtype=np.int64))
    if not ids_parts:
        empty = np.zeros((0, seq_len), dtype=np.int64)
        return PackedRows(empty, empty.copy(), empty.copy())
    rows = sum(len(part) for part in ids_parts) // seq_len
    used = rows * seq_len

    def rows_of(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)[:used].reshape(rows, seq_len)

    return PackedRows(rows_of(ids_parts), rows_of(label_parts), rows_of(position_parts))
