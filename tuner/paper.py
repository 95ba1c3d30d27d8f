"""The research the advice rests on, as data (pure).

Source: Biderman et al. 2024, "LoRA Learns Less and Forgets Less" (arXiv 2405.09673, TMLR), with the
authors' training tables; second source: Schulman et al. 2025, "LoRA Without Regret".
"""

from __future__ import annotations

PAPER = "Biderman et al. 2024, LoRA Learns Less and Forgets Less (arXiv 2405.09673)"
PEER = "Schulman et al. 2025, LoRA Without Regret"

# Learning rates the authors used for instruction fine-tuning (their tables), by task:
# full fine-tuning, and LoRA by rank.
FULL_FT_LEARNING_RATE = {"code": 5e-5, "math": 1e-5}
LORA_LEARNING_RATE = {
    "code": {16: 2e-4, 64: 2e-4, 256: 1e-4},  # loss spikes at 2e-4 with r = 256
    "math": {16: 1e-4, 64: 1e-4, 256: 5e-5},
}

# LoRA Without Regret's alpha: with alpha fixed, the best rate barely moves with the rank.
FIXED_ALPHA = 32.0

# Recommended minimum epochs for LoRA instruction fine-tuning (GSM8K peaks after 4 epochs).
MIN_IFT_EPOCHS = 4

FINDINGS = {
    "learning_rate": (
        "LoRA needs a much higher learning rate than full fine-tuning (about 4-10x for instruction "
        "tuning: code 2e-4 vs 5e-5, math 1e-4 vs 1e-5) and is sensitive to it; pick the highest rate "
        f"that trains stably ({PAPER}, Appendix B)"
    ),
    "targets": (
        "targeting all linear layers beats MLP-only, which beats attention-only, and the choice of "
        f"targets matters more than the rank ({PAPER}; {PEER} agrees: attention-only underperforms)"
    ),
    "rank": f"a higher rank (256) usually beats 16 when memory allows ({PAPER})",
    "alpha": (
        f"alpha = 2r ({PAPER}); {PEER} fixes alpha = 32 instead, so a preset always stores alpha "
        "together with the learning rate"
    ),
    "epochs": (
        f"prefer instruction fine-tuning to continued pretraining and train it for at least "
        f"{MIN_IFT_EPOCHS} epochs (math IFT reached GSM8K 0.622 after 4 epochs; {PAPER})"
    ),
    "cpt": (
        "continued pretraining on raw text learned less than instruction tuning in the paper (GSM8K 0.187 for LoRA "
        "vs 0.230 for full fine-tuning after math CPT, against 0.622 vs 0.642 after math IFT; HumanEval 0.175 vs "
        "0.263 after code CPT), LoRA's best rate was closer to full fine-tuning's (1-4x, not 4-10x) and it forgot "
        f"less than instruction tuning; where you have instructions and answers, instruction tuning is the better "
        f"use of LoRA ({PAPER})"
    ),
    "qlora": (
        "QLoRA trains the adapter on 4-bit NF4 weights with double-quantised constants, about a quarter of the "
        "16-bit weights' memory; Dettmers et al. 2023 matched 16-bit LoRA on their benchmarks, but the 4-bit "
        "base is a slightly different model, so its trials measure it, not the 16-bit one"
    ),
    "forgetting": (
        "LoRA learns less than full fine-tuning but forgets less; forgetting grows with the amount "
        f"of training and is larger for code than for math ({PAPER})"
    ),
}


def paper_learning_rate(task: str, rank: int) -> float:
    """The authors' LoRA learning rate for a task at the nearest rank they trained (custom uses code's)."""
    rates = LORA_LEARNING_RATE.get(task, LORA_LEARNING_RATE["code"])
    nearest = min(rates, key=lambda known: abs(known - rank))
    return rates[nearest]
