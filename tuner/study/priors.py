"""Starting points that transfer across models: a learning rate from the model's width, LoRA's 10x over full
fine-tuning, and the adapter shapes the research favours (pure).

The width rule is the Tinker cookbook's former `hyperparam_utils.get_lr` formula,
LR = 5e-5 * M * (2000 / hidden_size) ** P, with M = 10 for LoRA (LoRA Without Regret: LoRA's best rate is
about 10x full fine-tuning's) and 1 for full fine-tuning, and P fitted per model family. The paper's rates
for Llama-2-7B (tuner.paper) stay as evidence: at hidden size 4096 the rule gives 2.9e-4, between the
authors' code (2e-4) and the fitted 10x of their full fine-tuning rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner.paper import FINDINGS, FIXED_ALPHA, PAPER, PEER, paper_learning_rate

if TYPE_CHECKING:
    from tuner.study.space import SearchSpace

BASE_RATE = 5e-5
"""Full fine-tuning's rate at hidden size 2000 (Tinker cookbook)."""
REFERENCE_WIDTH = 2000
LORA_RATE_MULTIPLE = 10.0  # LoRA's best rate is about 10x full fine-tuning's (LoRA Without Regret)
WIDTH_EXPONENT = {"llama": 0.781, "qwen": 0.0775}
"""P by model family, as the Tinker cookbook fitted it; other families use Llama's."""
RULE = (
    "width rule LR = 5e-5 x {multiple:g} x (2000 / hidden size {width}) ^ {exponent:g} "
    "({family} exponent; Tinker cookbook, with {peer}'s 10x for LoRA)"
)


def model_family(model_type: str) -> str:
    """The family whose width exponent applies to a transformers model_type ('qwen2', 'qwen3' count as qwen)."""
    return "qwen" if model_type.lower().startswith("qwen") else "llama"


def width_rate(hidden_size: int, model_type: str, *, lora: bool = True) -> float:
    """The width rule's learning rate for LoRA (or, with lora=False, full fine-tuning)."""
    if hidden_size < 1:
        raise ValueError(f"hidden size must be positive, got {hidden_size}")
    exponent = WIDTH_EXPONENT[model_family(model_type)]
    multiple = LORA_RATE_MULTIPLE if lora else 1.0
    return BASE_RATE * multiple * (REFERENCE_WIDTH / hidden_size) ** exponent


def width_rule(hidden_size: int, model_type: str, *, lora: bool = True) -> str:
    """How the width rule reached its rate, for the advice."""
    family = model_family(model_type)
    multiple = LORA_RATE_MULTIPLE if lora else 1.0
    rate = width_rate(hidden_size, model_type, lora=lora)
    text = RULE.format(multiple=multiple, width=hidden_size, exponent=WIDTH_EXPONENT[family], family=family, peer=PEER)
    if family == "llama" and not model_type.lower().startswith("llama"):
        text += f"; {model_type} has no fitted exponent, so Llama's is used"
    return f"{rate:.3g} from the {text}"


@dataclass(frozen=True)
class Prior:
    """One starting configuration and the rule that gave it."""

    params: dict[str, object]
    """The trial's parameters (as SearchSpace suggests them)."""
    rule: str
    """Which rule gave this starting point, said in the advice."""

    def to_json(self) -> dict[str, object]:
        return {"params": self.params, "rule": self.rule}


def first_guess_rank(ranks: tuple[int, ...]) -> int:
    """The single guess's rank: 16 where the space has it (the paper's small rank), else the nearest."""
    return min(ranks, key=lambda rank: abs(rank - 16))


def guess_rate(hidden_size: int | None, model_type: str, task: str) -> tuple[float, str]:
    """The single guess's learning rate and how it was reached: the width rule, or without a known width the
    paper's rate at r 16."""
    if hidden_size is None:
        rate = paper_learning_rate(task, 16)
        return rate, f"{rate:g}, the paper's LoRA rate at r 16 (the model's config gives no hidden size; {PAPER})"
    return float(f"{width_rate(hidden_size, model_type):.3g}"), width_rule(hidden_size, model_type)


def starting_points(space: SearchSpace, hidden_size: int | None, model_type: str, task: str) -> list[Prior]:
    """The configurations a study tries first: the single educated guess, then the same at a high rank."""
    targets = next(t for t in ("all", "mlp", "attention") if t in space.targets)  # all > MLP > attention
    variant = "lora" if "lora" in space.variants else space.variants[0]
    rate, rate_rule = guess_rate(hidden_size, model_type, task)
    rank = first_guess_rank(space.ranks)

    def params(rank: int, rate: float) -> dict[str, object]:
        chosen: dict[str, object] = {"learning_rate": rate, "rank": rank}
        if space.alphas is not None:
            chosen["alpha"] = space.alphas[0] if FIXED_ALPHA not in space.alphas else FIXED_ALPHA
        else:
            chosen["alpha_multiple"] = 2.0 if 2.0 in space.alpha_multiples else space.alpha_multiples[0]
        chosen["targets"] = targets
        if space.variants != ("lora",):
            chosen["variant"] = variant
        return chosen

    guess = Prior(
        params(rank, rate),
        f"the single educated guess: {targets} linear layers (all > MLP > attention; {PAPER}), r {rank}, "
        f"{space.alpha_rule()}, learning rate {rate_rule}",
    )
    high_ranks = [r for r in space.ranks if rank < r <= 256]
    if not high_ranks:
        return [guess]
    high = max(high_ranks)
    if space.alphas is not None:
        high_rate, why = rate, f"the same rate: with alpha fixed the best rate barely moves with the rank ({PEER})"
    else:  # the paper's rates halve from r 16 to r 256 at alpha = 2r
        high_rate = float(f"{rate * paper_learning_rate(task, high) / paper_learning_rate(task, 16):.3g}")
        why = f"the rate scaled as the paper's rates scale from r 16 to r {high} ({PAPER})"
    return [guess, Prior(params(high, high_rate), f"r {high}: {FINDINGS['rank']}; {why}")]
