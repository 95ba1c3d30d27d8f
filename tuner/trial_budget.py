"""One trial's training budget (pure): tokens, step shape, evaluations and the rungs of successive halving."""

from __future__ import annotations

from dataclasses import dataclass

from tuner.defaults import (
    CONFIRM_ROWS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_GRAD_NORM,
    DEFAULT_SEQ_LEN,
    DEFAULT_WARMUP_RATIO,
    EVAL_ROWS,
    HALVING_RATE,
    MAX_BATCH_SIZE,
    MAX_SEQ_LEN,
)


@dataclass(frozen=True)
class Packing:
    """How examples become packed rows and a held-out split: the row length, one step's rows, held-out rows."""

    seq_len: int
    """Tokens per packed row."""
    batch_size: int
    """Rows one optimizer step needs (the data must give at least one batch)."""
    eval_rows: int = EVAL_ROWS
    """Packed rows in each held-out set (target and general text)."""
    confirm_rows: int = 0
    """Packed rows in each confirm set, taken from the end of the examples (0: none; the training set is then
    exactly what it was before confirm sets existed)."""


def check_step_shape(batch_size: int, seq_len: int, warmup_ratio: float, max_grad_norm: float) -> None:
    """ValueError for a batch, row length, warm-up share or clipping norm that no run can use."""
    for name, value, most in (("batch_size", batch_size, MAX_BATCH_SIZE), ("seq_len", seq_len, MAX_SEQ_LEN)):
        if not 1 <= value <= most:
            raise ValueError(f"{name} must be between 1 and {most:,}, got {value}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    if max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")


@dataclass(frozen=True)
class TrainBudget:
    """How much one trial trains and how often it is evaluated."""

    train_tokens: int
    """Training tokens per trial (every token is real: rows are packed, never padded)."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Rows per optimizer step."""
    seq_len: int = DEFAULT_SEQ_LEN
    """Tokens per packed row."""
    warmup_ratio: float = DEFAULT_WARMUP_RATIO
    """Share of steps spent warming up."""
    max_grad_norm: float = DEFAULT_MAX_GRAD_NORM
    """Gradient clipping."""
    evaluations: int = 4
    """Held-out evaluations per trial at most: the rungs of successive halving, the last at the final step."""
    eval_rows: int = EVAL_ROWS
    """Packed rows in each held-out set (target and general)."""
    confirm_rows: int | None = None
    """Packed rows in each confirm set, on which the best trials are re-measured (0: none; None: sized to the
    trial, see confirm_set_rows)."""

    def __post_init__(self) -> None:
        check_step_shape(self.batch_size, self.seq_len, self.warmup_ratio, self.max_grad_norm)
        for name in ("evaluations", "eval_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.confirm_rows is not None and self.confirm_rows < 0:
            raise ValueError(f"confirm_rows must be 0 or more, got {self.confirm_rows}")
        if self.train_tokens < self.tokens_per_step():
            raise ValueError(
                f"a trial budget of {self.train_tokens} tokens is below one optimizer step "
                f"({self.batch_size} rows x {self.seq_len} tokens = {self.tokens_per_step()}); "
                "a trial needs at least one step before its evaluation"
            )

    def packing(self) -> Packing:
        """Rows of the trial's length, batches of its size, its held-out and confirm rows."""
        return Packing(self.seq_len, self.batch_size, self.eval_rows, self.confirm_set_rows())

    def confirm_set_rows(self) -> int:
        """Rows of each confirm set: as given, else half the rows a trial trains on (re-measuring a trial then
        costs about a third of its training: a forward pass is a third of a training step), at least the
        ranking rows and at most CONFIRM_ROWS."""
        if self.confirm_rows is not None:
            return self.confirm_rows
        return min(CONFIRM_ROWS, max(self.eval_rows, self.steps() * self.batch_size // 2))

    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimizer step."""
        return self.batch_size * self.seq_len

    def steps(self) -> int:
        """Optimizer steps that fit in the token budget."""
        return self.train_tokens // self.tokens_per_step()

    def warmup_steps(self) -> int:
        """Linear warm-up steps before the cosine decay."""
        return round(self.warmup_ratio * self.steps())

    def eval_steps(self) -> list[int]:
        """The rungs of successive halving: steps r, 2r, 4r, ... and the last step, after which the held-out sets
        are evaluated and a trial is kept or pruned; the first rung lies past the warm-up."""
        steps = self.steps()
        first_allowed = self.warmup_steps() + 1  # losses mid-warm-up rank learning rates poorly
        for count in range(min(self.evaluations, steps), 0, -1):
            first = steps // HALVING_RATE ** (count - 1)
            if count == 1 or first >= first_allowed:
                return sorted({*(first * HALVING_RATE**k for k in range(count - 1)), steps})
        return [steps]
