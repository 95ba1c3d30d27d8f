"""Full fine-tuning as a study's reference arm (pure): the rates it tries and what it says beside LoRA's pick.

Biderman et al. 2024 measure LoRA against full fine-tuning; LoRA Without Regret finds LoRA's best rate about 10x
full fine-tuning's. A study run with `--reference full` trains every weight on the same data, budget and
schedule as its trials, at rates around the pick's rate / 10 (and the paper's full fine-tuning rate), and reports
the ratio of the two best rates and the gap in held-out losses, paired over the confirm rows where both were
measured there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuner.confirm import mean_loss, paired_difference
from tuner.paper import FULL_FT_LEARNING_RATE
from tuner.priors import LORA_RATE_MULTIPLE

REFERENCES = ("full",)
"""What a study can be compared with: full fine-tuning of every weight."""
SPREAD = 3.0
"""The reference's rates: the pick's rate / 10, and this factor either side of it."""
RUN_FIELDS = ("rate", "target_loss", "general_loss", "stopped")
"""What the summary keeps of each reference run (its curve and confirm rows stay in the study)."""
SAME_RATE = 1.5
"""The paper's rate is left out when it lies within this factor of a rate already tried."""


def reference_rates(lora_rate: float, task: str) -> tuple[float, ...]:
    """Full fine-tuning's rates for a study whose pick trained at `lora_rate`: LoRA's rate / 10 (the 10x rule read
    backwards), SPREAD x either side, and the authors' full fine-tuning rate for the task unless one is close."""
    centre = lora_rate / LORA_RATE_MULTIPLE
    rates = [float(f"{rate:.3g}") for rate in (centre / SPREAD, centre, centre * SPREAD)]
    paper = FULL_FT_LEARNING_RATE.get(task, FULL_FT_LEARNING_RATE["code"])
    if all(max(paper / rate, rate / paper) >= SAME_RATE for rate in rates):
        rates.append(paper)
    return tuple(sorted(rates))


def rate_key(rate: float) -> str:
    """How a rate names its run in the study's attributes (JSON keys are text)."""
    return f"{rate:.4g}"


def reference_summary(
    runs: dict[str, dict[str, Any]],
    lora_rate: float,
    lora_losses: tuple[float | None, float | None],
    lora_confirm: dict[str, Sequence[Sequence[float]]] | None = None,
) -> dict[str, Any] | None:
    """The reference beside the pick: each rate's final held-out losses, the best rate (lowest target loss among
    the runs that did not diverge), the ratio of LoRA's rate to it, and the gaps LoRA - full in target and general
    held-out loss (paired over the confirm rows with their standard errors where both were measured there);
    None when no run finished."""
    finished = {key: run for key, run in runs.items() if run.get("target_loss") is not None and not run.get("stopped")}
    if not finished:
        return None
    best_key = min(finished, key=lambda key: finished[key]["target_loss"])
    best = finished[best_key]
    summary: dict[str, Any] = {
        "method": "full",
        "runs": {
            key: {k: run.get(k) for k in ("rate", "target_loss", "general_loss", "stopped")}
            for key, run in runs.items()
        },
        "best_rate": best["rate"],
        "lora_rate": lora_rate,
        "rate_ratio": lora_rate / best["rate"],
        "target_loss": {"lora": lora_losses[0], "full": best["target_loss"]},
        "general_loss": {"lora": lora_losses[1], "full": best["general_loss"]},
    }
    for name, index in (("target_loss", 0), ("general_loss", 1)):
        if lora_losses[index] is not None:
            summary[name]["gap"] = lora_losses[index] - best[name]  # type: ignore[operator]
    confirm = best.get("confirm")
    if lora_confirm and confirm:
        for name, rows in (("target_loss", "target"), ("general_loss", "general")):
            gap, error = paired_difference(lora_confirm[rows], confirm[rows])
            summary[name]["confirm"] = {
                "lora": mean_loss(lora_confirm[rows]),
                "full": mean_loss(confirm[rows]),
                "gap": gap,
                "stderr": error,
                "rows": len(confirm[rows]),
            }
    return summary
