"""What each step of the guided session advises, and why (pure): the paper's findings applied to the choices so far."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuner.defaults import DEFAULT_GOAL, DEFAULT_TASK, DEFAULT_TRIAL_TOKENS, DEFAULT_TRIALS
from tuner.models.load import DEFAULT_MODEL
from tuner.paper import FINDINGS, LORA_LEARNING_RATE, MIN_IFT_EPOCHS
from tuner.study.budget import StudyBudget, format_duration

DEFAULT_STUDY_BUDGET = "10min"
"""The app's time step starts from ten minutes of trials."""
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
    data_format: str = "auto"
    """Own data: its format (tuner.data.formats.FORMATS), or 'auto' to find it from the columns."""
    regime: str | None = None
    """Own data: 'ift' (loss on the responses) or 'cpt' (loss on every token); None: cpt for plain text, else ift."""
    model: str = DEFAULT_MODEL
    memory_budget: str | None = None
    goal: float = DEFAULT_GOAL
    trials: int = DEFAULT_TRIALS
    """Trials to run when there is no study budget."""
    trial_tokens: int = DEFAULT_TRIAL_TOKENS
    study_budget: str | None = DEFAULT_STUDY_BUDGET
    """What the whole study may spend, as `advisor tune --search-budget` takes it (None: `trials` trials)."""
    allow_code_execution: bool | None = None
    """Whether HumanEval may run the model's code (asked once, when the task is code); None: not asked yet."""
    typed: dict[str, str] = field(default_factory=dict)
    """What was typed in each step's fields ('Step#field-id') when it was left by Back, valid or not: the step shows
    it again when it is opened next (and checks it on Next)."""


def task_advice(task: str, data_format: str = "auto", regime: str | None = None) -> str:
    """Why instruction data (or what continued pretraining costs, where the data is plain text or every token is
    asked to train), and what the paper measured for this task."""
    if task == "custom" and (regime == "cpt" or (regime is None and data_format == "text")):
        lines = [f"Continued pretraining: every token trains. {FINDINGS['cpt'][0].upper()}{FINDINGS['cpt'][1:]}."]
    else:
        lines = [f"Instruction fine-tuning, not continued pretraining: {FINDINGS['epochs']}."]
    start = (
        "the study starts from a rate for your model's width (LoRA Without Regret's 10x rule) and searches around it"
    )
    if task == "custom":
        lines.append(f"The paper measured code and math, not your data: {start}.")
    else:
        rates = LORA_LEARNING_RATE[task]
        lines.append(
            f"The authors trained LoRA on {task} (Llama-2-7B) at learning rates "
            + ", ".join(f"{rate:g} (r={rank})" for rank, rate in rates.items())
            + f"; the best rate moves with the model's width, so {start}."
        )
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


OVERHEAD = 1.2
"""A study's time over its training time: evaluations, re-measuring the best trials and scoring add about a fifth."""


def estimated_seconds(trials: int, trial_tokens: int, tokens_per_second: float = CPU_TOKENS_PER_SECOND) -> float:
    """Rough study duration: training tokens over the measured speed, plus a fifth for evaluation and scoring."""
    return trials * trial_tokens / tokens_per_second * OVERHEAD


def budget_estimate(budget: StudyBudget, trial_tokens: int, tokens_per_second: float = CPU_TOKENS_PER_SECOND) -> str:
    """What a study budget buys on this project's CPU: its time or its training tokens, and full trials' worth."""
    speed = f"on this project's 2-core CPU ({tokens_per_second:.0f} tokens/s; a GPU is far faster)"
    if budget.seconds is not None:
        tokens = budget.seconds / OVERHEAD * tokens_per_second
        bought = f"{format_duration(budget.seconds)} of trials: {speed} about {tokens:,.0f} training tokens"
    else:
        tokens = budget.tokens or 0
        bought = f"{tokens:,} training tokens: {speed} {format_duration(tokens / tokens_per_second * OVERHEAD)}"
    worth = tokens / trial_tokens
    if worth < 1:
        unit = "token" if trial_tokens == 1 else "tokens"
        return f"{bought[0].upper()}{bought[1:]}, less than one trial of {trial_tokens:,} {unit}."
    return (
        f"{bought[0].upper()}{bought[1:]}, {worth:.1f} full trials' worth, spread by successive halving over more, "
        "shorter trials. Loading the model and measuring it come first."
    )
