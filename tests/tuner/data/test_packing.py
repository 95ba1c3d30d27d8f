from __future__ import annotations

import numpy as np
import pytest

from tuner.data.packing import IGNORE_INDEX, pack

X = IGNORE_INDEX


def test_rows_are_full_and_positions_restart_per_example():
    examples = [([1, 2, 3], [X, 2, 3]), ([4, 5], [X, 5]), ([6, 7, 8, 9], [X, X, 8, 9])]
    rows = pack(examples, seq_len=4)
    assert rows.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]  # 9 tokens: the partial last row is dropped
    assert rows.labels.tolist() == [[X, 2, 3, X], [5, X, X, 8]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 0], [1, 0, 1, 2]]
    assert rows.tokens() == 8 and rows.label_tokens() == 4


def test_long_examples_are_cut_to_seq_len():
    rows = pack([(list(range(10)), list(range(10))), ([20, 21, 22], [20, 21, 22])], seq_len=4)
    assert rows.input_ids[0].tolist() == [0, 1, 2, 3]
    assert len(rows) == 1  # 4 kept + 3 = 7 tokens: one full row


def test_no_padding_anywhere():
    rng = np.random.default_rng(0)
    examples = [(list(rng.integers(1, 100, n)), list(rng.integers(1, 100, n))) for n in rng.integers(1, 40, 50)]
    rows = pack(examples, seq_len=16)
    assert (rows.input_ids != 0).all()
    assert rows.input_ids.shape == (sum(min(len(e[0]), 16) for e in examples) // 16, 16)


def test_empty_and_mismatched_inputs():
    assert len(pack([], seq_len=8)) == 0
    with pytest.raises(ValueError, match="3 tokens but 2 labels"):
        pack([([1, 2, 3], [1, 2])], seq_len=8)
