"""The settings' defaults, bounds and choices (pure), declared once for the settings, the CLI, the app and the
exports: by default, a study of a few minutes on a laptop CPU."""

from __future__ import annotations

from tuner.paper import MIN_IFT_EPOCHS

TASKS = ("code", "math", "custom")
DATA_FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt-completion", "columns", "text")
"""What --format takes (tuner.data.formats reads each): 'auto' finds the format from the data's columns."""
REGIMES = ("ift", "cpt")
"""Instruction tuning (loss on the responses) and continued pretraining (loss on every token)."""
"""The tasks a study or a full run trains for."""

# Defaults and bounds, for `advisor tune`, `advisor train` and the app alike.
DEFAULT_TASK = "math"  # GSM8K scores without running generated code
DEFAULT_TRIALS = 8
MAX_BUDGET_TRIALS = 1000
"""Trials a study with a budget may start at most when no count is given: the budget ends it first."""
DEFAULT_TRIAL_TOKENS = 16_384
DEFAULT_GOAL = 0.5
DEFAULT_BATCH_SIZE = 4  # LoRA prefers small batches (LoRA Without Regret: effective batch < 32)
DEFAULT_SEQ_LEN = 512
MAX_SEQ_LEN = 1 << 20  # tokens per row at most: past any model's context (1M at the longest): a slip is refused
MAX_BATCH_SIZE = 1 << 16  # rows per step at most: past any step that fits a machine
DEFAULT_EPOCHS = MIN_IFT_EPOCHS  # at least 4 epochs of instruction tuning (Biderman et al. 2024)
DEFAULT_WARMUP_RATIO = 0.1  # 10 % warm-up, as in Biderman et al. 2024
DEFAULT_MAX_GRAD_NORM = 1.0  # gradient clipping 1.0, as in Biderman et al. 2024
EVAL_ROWS = 8
"""Packed rows in each held-out set (target and general text)."""
CONFIRM_ROWS = 32
"""Packed rows in each confirm set (target and general text) at most: the best trials are re-measured there before
the recommendation, on up to four times the rows they were pruned on, examples no trial was ranked by."""
CONFIRM_TRIALS = 3
"""How many of the best completed trials are re-measured on the confirm sets."""
HALVING_RATE = 2
"""Successive halving: each rung keeps the best 1 / HALVING_RATE of the trials that reached it and doubles their
steps (Jamieson & Talwalkar 2016; Optuna's SuccessiveHalvingPruner)."""

# The choices a setting takes.
TARGET_SETS = ("attention", "mlp", "all")
METHODS = ("lora", "full")
"""LoRA adapters, or full fine-tuning: every weight trained, the reference Biderman et al. 2024 compare LoRA to."""
VARIANTS = ("lora", "rslora", "dora", "pissa", "loraplus")
"""LoRA variants: plain, rank-stabilised scaling, weight-decomposed, PiSSA initialisation, a higher rate for B."""
QUANTIZE_MODES = ("none", "nf4")
"""The base model's weights while LoRA trains: 16-bit ('none') or 4-bit NF4 with double quantisation (QLoRA,
Dettmers et al. 2023)."""
STUDY_QUANTIZE_MODES = (*QUANTIZE_MODES, "search")
"""A study's base weights: one of QUANTIZE_MODES for every trial, or 'search': each trial draws 16 or 4 bits (QLoRA
costs quality, so the search weighs it only when asked)."""

# Llama-style module names (PAPER.md, "Names other tools use for the same settings").
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")

VARIANT_LABELS = {"lora": "LoRA", "rslora": "rsLoRA", "dora": "DoRA", "pissa": "PiSSA", "loraplus": "LoRA+"}
"""How reports and export headers name each variant: rsLoRA scales by alpha / sqrt(r) (Kalajdzievski 2023); DoRA
decomposes the weight into magnitude and direction (Liu et al. 2024); PiSSA starts from the weights' principal
singular vectors (Meng et al. 2024); LoRA+ trains B faster than A (Hayou et al. 2024)."""
LORAPLUS_LR_RATIO = 16
"""LoRA+: B's learning rate over A's (Hayou et al. 2024 recommend 2^4)."""
PISSA_INIT = "pissa_niter_4"
"""PiSSA through peft: the fast SVD with 4 subspace iterations (seconds, where the full SVD takes minutes)."""
