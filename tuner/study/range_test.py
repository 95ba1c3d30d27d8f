"""The learning-rate range test: one short run whose rate rises exponentially, to find where this model on this
data stops improving and where it diverges; the study searches the rates below that (Smith 2017, "Cyclical
Learning Rates"; fastai's lr_find). Its analysis is pure; the run itself needs torch and peft.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tuner.records.io import RECORD_VERSION, read_fields
from tuner.settings import LoraSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tuner.data.prepare import StudyData
    from tuner.training.runtime import Runtime

RANGE_FILE = "range_test.json"


def range_file(variant: str | None = None) -> str:
    """Where a range test's curve is kept in the run directory: RANGE_FILE for the first, one file per other
    variant searched (range_test_dora.json)."""
    return RANGE_FILE if variant is None else f"range_test_{variant}.json"


@dataclass(frozen=True)
class RangeTestPlan:
    """How the range test runs: rates from `start` to `end` over `steps` steps of `rows` packed rows each."""

    start: float = 1e-5
    """The first step's rate."""
    end: float = 1e-1
    """The rate the last step would reach (the test stops earlier when the loss diverges)."""
    steps: int = 40
    """Steps at most; the rate grows by (end / start) ** (1 / (steps - 1)) per step."""
    rows: int = 1
    """Packed rows per step: one, so that the test costs a fraction of a trial."""
    smoothing: float = 0.8
    """Weight of the past in the exponential moving average of the loss (bias-corrected, as fastai's)."""
    diverge_factor: float = 1.25
    """The test stops where the smoothed loss rises this far above its smoothed start."""
    min_improvement: float = 0.02
    """The smoothed loss must fall at least this share below its start for the test to set the searched rates."""

    def __post_init__(self) -> None:
        if not 0 < self.start < self.end < 1:
            raise ValueError(f"need 0 < start < end < 1, got {self.start} and {self.end}")
        if self.steps < 4 or self.rows < 1:
            raise ValueError(f"the range test needs at least 4 steps of 1 row, got {self.steps} of {self.rows}")
        if not 0 <= self.smoothing < 1 or self.diverge_factor <= 1:
            raise ValueError(
                f"need 0 <= smoothing < 1 and diverge_factor > 1, got {self.smoothing}, {self.diverge_factor}"
            )

    def rates(self) -> list[float]:
        """The rate of each step, rising exponentially."""
        ratio = (self.end / self.start) ** (1 / (self.steps - 1))
        return [self.start * ratio**step for step in range(self.steps)]

    def max_tokens(self, seq_len: int) -> int:
        """Training tokens of the whole test (it stops earlier when the loss diverges)."""
        return self.steps * self.rows * seq_len


@dataclass(frozen=True)
class RangeResult:
    """What the range test found, and its curve."""

    curve: list[list[float]] = field(default_factory=list)
    """[rate, loss, smoothed loss] per step."""
    best_rate: float = 0.0
    """The rate where the smoothed loss was lowest: beyond it the loss stops improving."""
    diverged_rate: float | None = None
    """The rate where the smoothed loss rose past the divergence threshold (None: it never did)."""
    low: float = 0.0
    """The searched range's lowest rate."""
    high: float = 0.0
    """The searched range's highest rate."""
    conclusive: bool = True
    """Whether the loss fell enough to set the searched rates (else the space's own rates are searched)."""
    tokens: int = 0
    """Training tokens the test used (they count in the study's budget)."""
    seconds: float = 0.0
    adapter: dict[str, Any] = field(default_factory=dict)
    """The adapter the test trained (rank, alpha, targets, variant)."""
    steps: int | None = None
    """Steps the test trained (None in findings from before it was kept: the curve's length)."""

    def describe(self) -> str:
        """The finding in one sentence, for the advice."""
        steps = self.steps if self.steps is not None else len(self.curve)
        where = f"diverged from {self.diverged_rate:.3g}" if self.diverged_rate else "never diverged"
        if not self.conclusive:
            return (
                f"a range test over {steps} steps ({self.tokens:,} tokens) saw the loss barely fall "
                f"before it {where.replace('never diverged', 'ended')}, so the default rates were searched"
            )
        return (
            f"a range test over {steps} steps ({self.tokens:,} tokens) found the loss lowest at "
            f"rate {self.best_rate:.3g} and {where}, so rates {self.low:.3g} to {self.high:.3g} were searched"
        )

    def to_json(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RangeResult:
        return cls(**read_fields(cls, payload, "range test"))


def smoothed(losses: list[float], smoothing: float) -> list[float]:
    """The bias-corrected exponential moving average of the losses."""
    average, out = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = smoothing * average + (1 - smoothing) * loss
        out.append(average / (1 - smoothing**step))
    return out


def diverged_at(rates: list[float], losses: list[float], plan: RangeTestPlan) -> int | None:
    """The step (index) where the smoothed loss went non-finite or rose past the threshold, or None."""
    curve = smoothed(losses, plan.smoothing)
    for index, (loss, value) in enumerate(zip(losses, curve, strict=True)):
        if not math.isfinite(loss) or not math.isfinite(value):
            return index
        if index > 0 and value > plan.diverge_factor * curve[0]:
            return index
    return None


def search_range(best_rate: float, diverged_rate: float | None) -> tuple[float, float]:
    """The rates to search: from a decade and a half below the lowest-loss rate to 3x above it, kept below
    half the divergence rate (the lowest-loss rate of a rising test is near the edge of stability, and a
    warmed-up, decaying schedule tolerates a little more)."""
    high = best_rate * 3
    if diverged_rate is not None:
        high = min(high, diverged_rate / 2)
    high = max(high, best_rate)
    return high / 30, high


def analyse(rates: list[float], losses: list[float], plan: RangeTestPlan) -> tuple[float, float | None, float, float]:
    """(best rate, divergence rate or None, searched low, searched high) for a test's rates and losses; see
    conclusive() for whether the loss fell enough to trust them."""
    if not rates or len(rates) != len(losses):
        raise ValueError(f"need one loss per rate, got {len(rates)} rates and {len(losses)} losses")
    stop = diverged_at(rates, losses, plan)
    kept = len(rates) if stop is None else max(stop, 1)
    curve = smoothed(losses[:kept], plan.smoothing)
    best = min(range(kept), key=lambda index: curve[index])
    diverged = rates[stop] if stop is not None else None
    low, high = search_range(rates[best], diverged)
    return rates[best], diverged, low, high


def conclusive(losses: list[float], plan: RangeTestPlan) -> bool:
    """Whether the smoothed loss fell at least plan.min_improvement below its start before the test ended."""
    finite = [loss for loss in losses if math.isfinite(loss)]
    curve = smoothed(finite, plan.smoothing) if finite else []
    return bool(curve) and min(curve) <= (1 - plan.min_improvement) * curve[0]


def run_range_test(
    model: PreTrainedModel,
    data: StudyData,
    lora: LoraSettings,
    runtime: Runtime,
    plan: RangeTestPlan,
    seed: int = 0,
) -> RangeResult:
    """Train one adapter with an exponentially rising rate until the loss diverges; `model` is left as it was."""
    import torch

    from tuner.training.trial import adapter_session, batch_tensors, row_order

    rates, losses = plan.rates(), []
    started = time.perf_counter()
    with adapter_session(model, lora, rates[0], seed) as session:
        peft_model, optimizer, trainable = session.peft_model, session.optimizer, session.trainable
        peft_model.train()
        ratios = [group["lr"] / rates[0] for group in optimizer.param_groups]  # LoRA+ gives B a higher rate
        order = row_order(len(data.train), plan.steps * plan.rows, seed)
        for step, rate in enumerate(rates):
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = rate * ratio
            batch = batch_tensors(data.train, order[step * plan.rows : (step + 1) * plan.rows], runtime.device)
            with runtime.autocast():
                loss = peft_model(**batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if diverged_at(rates[: step + 1], losses, plan) is not None:
                break
    steps = len(losses)
    best, diverged, low, high = analyse(rates[:steps], losses, plan)
    curve = [
        [float(f"{rate:.4g}"), round(loss, 5), round(value, 5)]
        for rate, loss, value in zip(rates, losses, smoothed(losses, plan.smoothing), strict=False)
    ]
    return RangeResult(
        curve=curve,
        best_rate=best,
        diverged_rate=diverged,
        low=low,
        high=high,
        conclusive=conclusive(losses, plan),
        tokens=steps * plan.rows * data.train.seq_len,
        seconds=round(time.perf_counter() - started, 2),
        adapter=asdict(lora),
        steps=steps,
    )
