"""The search space over learning rate, rank, alpha and target modules (pure: optuna is only called)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner.paper import paper_learning_rate
from tuner.settings import TARGET_SETS, LoraSettings

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class SearchSpace:
    """Ranges that Optuna samples from."""

    lr_low: float = 2e-5
    """Lowest learning rate (log scale); the paper's LoRA rates run from 5e-5 to 2e-4."""
    lr_high: float = 2e-3
    """Highest learning rate; small models tolerate higher rates than the paper's 7B."""
    ranks: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    """Candidate ranks (the paper compares 16 and 256)."""
    alpha_multiples: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """alpha = multiple x rank; 2 is the paper's convention."""
    targets: tuple[str, ...] = TARGET_SETS
    """Target module sets."""

    def __post_init__(self) -> None:
        if not 0 < self.lr_low < self.lr_high:
            raise ValueError(f"need 0 < lr_low < lr_high, got {self.lr_low} and {self.lr_high}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"ranks must be positive, got {self.ranks}")
        if not self.alpha_multiples or min(self.alpha_multiples) <= 0:
            raise ValueError(f"alpha multiples must be positive, got {self.alpha_multiples}")
        unknown = set(self.targets) - set(TARGET_SETS)
        if not self.targets or unknown:
            raise ValueError(f"targets must be drawn from {TARGET_SETS}, got {self.targets}")

    def suggest(self, trial: optuna.Trial) -> dict[str, object]:
        """Draw one configuration through Optuna's suggest_* calls."""
        return {
            "learning_rate": trial.suggest_float("learning_rate", self.lr_low, self.lr_high, log=True),
            "rank": trial.suggest_categorical("rank", list(self.ranks)),
            "alpha_multiple": trial.suggest_categorical("alpha_multiple", list(self.alpha_multiples)),
            "targets": trial.suggest_categorical("targets", list(self.targets)),
        }

    def including(self, params: dict[str, object]) -> SearchSpace:
        """This space widened to hold one configuration (a preset's values may lie outside the defaults)."""
        rate = float(params["learning_rate"])  # type: ignore[arg-type]
        return SearchSpace(
            lr_low=min(self.lr_low, rate),
            lr_high=max(self.lr_high, rate),
            ranks=tuple(sorted({*self.ranks, int(params["rank"])})),  # type: ignore[call-overload]
            alpha_multiples=tuple(sorted({*self.alpha_multiples, float(params["alpha_multiple"])})),  # type: ignore[arg-type]
            targets=tuple(t for t in TARGET_SETS if t in {*self.targets, str(params["targets"])}),
        )

    def paper_configurations(self, task: str) -> list[dict[str, object]]:
        """The paper's all-linear settings at r = 16 and r = 256 (alpha = 2r), enqueued before the search."""
        return [
            {
                "learning_rate": paper_learning_rate(task, rank),
                "rank": rank,
                "alpha_multiple": 2.0,  # alpha = 2r, as in Biderman et al. 2024
                "targets": "all",
            }
            for rank in (16, 256)
            if rank in self.ranks
        ]


def trial_params(lora: LoraSettings, learning_rate: float) -> dict[str, object]:
    """A trial's parameters for an adapter and rate (the inverse of lora_from_params)."""
    return {
        "learning_rate": learning_rate,
        "rank": lora.rank,
        "alpha_multiple": lora.alpha / lora.rank,
        "targets": lora.targets,
    }


def lora_from_params(params: dict[str, object]) -> LoraSettings:
    """The adapter settings a trial's parameters describe."""
    rank = int(params["rank"])  # type: ignore[arg-type]
    return LoraSettings(
        rank=rank,
        alpha=float(params["alpha_multiple"]) * rank,  # type: ignore[arg-type]
        targets=str(params["targets"]),
    )
