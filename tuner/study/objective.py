"""The study's objective and the divergence guard (pure)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


def forgetting_rise(general_loss: float, base_general_loss: float) -> float:
    """How far the loss on held-out general text rose above the base model's (negative: it fell)."""
    return general_loss - base_general_loss


def objective_value(target_loss: float, general_loss: float, base_general_loss: float, goal: float) -> float:
    """Held-out target-domain loss plus the forgetting rise weighted by the goal (0 learn most, 1 forget least).

    At goal 1 a nat of forgetting costs as much as a nat of learning gained.
    """
    if not 0.0 <= goal <= 1.0:
        raise ValueError(f"goal must be between 0 and 1, got {goal}")
    return target_loss + goal * forgetting_rise(general_loss, base_general_loss)


@dataclass
class DivergenceGuard:
    """Says why a run diverged: a non-finite loss, or a recent mean loss far above the starting loss."""

    start_loss: float
    """The base model's held-out loss on the target task."""
    factor: float = 2.0
    """How many times the starting loss counts as diverged."""
    window: int = 4
    """Steps averaged before comparing with the start."""
    _recent: deque[float] = field(default_factory=deque, init=False, repr=False)

    def check(self, step: int, loss: float) -> str | None:
        """Record one training loss; return the reason to stop, or None."""
        if not math.isfinite(loss):
            return f"diverged: training loss became {loss} at step {step}"
        self._recent.append(loss)
        if len(self._recent) > self.window:
            self._recent.popleft()
        recent_mean = sum(self._recent) / len(self._recent)
        if len(self._recent) == self.window and recent_mean > self.factor * self.start_loss:
            return (
                f"diverged: mean training loss {recent_mean:.3g} over steps {step - self.window + 1}-{step} "
                f"is above {self.factor:g}x the starting loss {self.start_loss:.3g}"
            )
        return None

    def check_heldout(self, step: int, heldout_loss: float) -> str | None:
        """Check a held-out evaluation: non-finite, or far above the starting loss."""
        if not math.isfinite(heldout_loss):
            return f"diverged: held-out loss became {heldout_loss} at step {step}"
        if heldout_loss > self.factor * self.start_loss:
            return (
                f"diverged: held-out loss {heldout_loss:.3g} at step {step} is above "
                f"{self.factor:g}x the starting loss {self.start_loss:.3g}"
            )
        return None
