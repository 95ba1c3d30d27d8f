"""What each step of the guided session advises, and why (pure): the paper's findings applied to the choices so far."""

from __future__ import annotations

from dataclasses import dataclass

from tuner.models import DEFAULT_MODEL
from tuner.paper import FINDINGS, LORA_LEARNING_RATE, MIN_IFT_EPOCHS
from tuner.settings import DEFAULT_GOAL, DEFAULT_TASK, DEFAULT_TRIAL_TOKENS, DEFAULT_TRIALS

CPU_TOKENS_PER_SECOND = 200
"""LoRA training speed of SmolLM2-135M on the project's 2-core CPU (bench/trial_throughput.py)."""
GOALS = {
    0.0: "learn most",
    0.25: "lean to learning",
    0.5: "balanced",
    0.75: "lean to keeping",
    1.0: "forget least",
}
"""The goal's stops: 0 weighs only the target loss, 1 makes a nat of forgetting cost as much as one learned."""


@dataclass(frozen=True)
class Choices:
    """What the person has chosen so far in the guided session."""

    task: str = DEFAULT_TASK
    data: str | None = None
    prompt_column: str = "prompt"
    response_column: str = "response"
    model: str = DEFAULT_MODEL
    memory_budget: str | None = None
    goal: float = DEFAULT_GOAL
    trials: int = DEFAULT_TRIALS
    trial_tokens: int = DEFAULT_TRIAL_TOKENS
    allow_code_execution: bool | None = None
    """Whether HumanEval may run the model's code (asked once, when the task is code); None: not asked yet."""


def task_advice(task: str) -> str:
    """Why instruction data, and what the paper measured for this task."""
    rates = LORA_LEARNING_RATE.get(task, LORA_LEARNING_RATE["code"])
    lines = [
        f"Instruction fine-tuning, not continued pretraining: {FINDINGS['epochs']}.",
        f"The authors trained LoRA on {task if task != 'custom' else 'code'} at learning rates "
        + ", ".join(f"{rate:g} (r={rank})" for rank, rate in rates.items())
        + "; the study starts from them.",
    ]
    if task == "code":
        lines.append("Code forgets more than math: watch the general score. " + FINDINGS["forgetting"] + ".")
    return "\n".join(lines)


def model_advice(parameters: int | None) -> str:
    """What the model's size means for the search."""
    size = f"{parameters / 1e6:,.0f}M parameters. " if parameters else ""
    return size + f"Learning rate: {FINDINGS['learning_rate']}."


def memory_advice() -> str:
    """Which choices memory constrains, and which it should not."""
    return (
        f"Targets first: {FINDINGS['targets']}. Then rank: {FINDINGS['rank']}. Under a tight budget, lower the "
        "rank or the batch before dropping the MLP from the targets."
    )


def goal_advice(goal: float) -> str:
    """What the goal trades, in the paper's words."""
    return (
        f"Goal {goal:g} ({GOALS.get(goal, 'custom')}): the study minimises held-out loss + {goal:g} x the rise in "
        f"general-text loss. {FINDINGS['forgetting']}. Recommended runs train for at least {MIN_IFT_EPOCHS} epochs."
    )


def estimated_seconds(trials: int, trial_tokens: int, tokens_per_second: float = CPU_TOKENS_PER_SECOND) -> float:
    """Rough study duration: training tokens over the measured speed, plus a fifth for evaluation and scoring."""
    return trials * trial_tokens / tokens_per_second * 1.2
