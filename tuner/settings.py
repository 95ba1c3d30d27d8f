"""Frozen settings for LoRA adapters, trial budgets and studies (pure: no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

TASKS = ("code", "math", "custom")
TARGET_SETS = ("attention", "mlp", "all")

# Llama-style module names (PAPER.md, "Names other tools use for the same settings").
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """One LoRA adapter configuration."""

    rank: int
    """LoRA rank r."""
    alpha: float
    """Scaling numerator: the update is scaled by alpha / r."""
    targets: str
    """Which linear layers get adapters: 'attention', 'mlp' or 'all'."""
    dropout: float = 0.0
    """Dropout on the adapter input (0, as in LoRA Without Regret's recipe)."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be at least 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if self.targets not in TARGET_SETS:
            raise ValueError(f"targets must be one of {', '.join(TARGET_SETS)}, got {self.targets!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def target_modules(self) -> list[str] | str:
        """The value for peft's LoraConfig.target_modules ('all-linear' means every linear layer but the head)."""
        if self.targets == "attention":
            return list(ATTENTION_MODULES)
        if self.targets == "mlp":
            return list(MLP_MODULES)
        return "all-linear"


@dataclass(frozen=True)
class TrainBudget:
    """How much one trial trains and how often it is evaluated."""

    train_tokens: int
    """Training tokens per trial (every token is real: rows are packed, never padded)."""
    batch_size: int = 4
    """Rows per optimizer step; LoRA prefers small batches (LoRA Without Regret: effective batch < 32)."""
    seq_len: int = 512
    """Tokens per packed row."""
    warmup_ratio: float = 0.1
    """Share of steps spent warming up (10 %, as in Biderman et al. 2024)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (1.0, as in Biderman et al. 2024)."""
    evaluations: int = 4
    """Held-out evaluations per trial, evenly spaced, the last at the final step."""
    eval_rows: int = 8
    """Packed rows in each held-out set (target and general)."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "evaluations", "eval_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")
        if self.train_tokens < self.tokens_per_step():
            raise ValueError(
                f"a trial budget of {self.train_tokens} tokens is below one optimizer step "
                f"({self.batch_size} rows x {self.seq_len} tokens = {self.tokens_per_step()}); "
                "a trial needs at least one step before its evaluation"
            )

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
        """Steps after which the held-out sets are evaluated, ending with the last step."""
        steps = self.steps()
        count = min(self.evaluations, steps)
        return sorted({round(steps * (i + 1) / count) for i in range(count)})


@dataclass(frozen=True)
class StudySettings:
    """What one `advisor tune` study searches for; the identity a resumed study must match."""

    task: str
    """'code', 'math' or 'custom'."""
    model: str
    """Model as given: built-in name, hub id, local directory or .gguf file."""
    trials: int
    """Trials that must reach an end (complete, pruned or failed) in the study."""
    budget: TrainBudget
    """Training tokens, batch and evaluation per trial."""
    goal: float = 0.5
    """0 learns most, 1 forgets least: the weight of the forgetting term in the objective."""
    seed: int = 0
    """Seed for the sampler, the data split and each trial's initialisation."""
    data: str | None = None
    """Custom task: a JSONL/JSON/CSV/Parquet file or a hub dataset id."""
    prompt_column: str = "prompt"
    """Custom task: the column holding the instruction."""
    response_column: str = "response"
    """Custom task: the column holding the answer to learn."""
    memory_budget: int | None = None
    """Bytes a trial may use (GPU memory, or RAM on CPU); configurations estimated above it are not run."""

    def __post_init__(self) -> None:
        if self.memory_budget is not None and self.memory_budget < 1:
            raise ValueError(f"memory budget must be positive, got {self.memory_budget}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        if not 0.0 <= self.goal <= 1.0:
            raise ValueError(f"goal must be between 0 (learn most) and 1 (forget least), got {self.goal}")
        if self.task == "custom" and not self.data:
            raise ValueError("the custom task needs --data: a JSONL, JSON, CSV or Parquet file, or a hub dataset id")

    def identity(self) -> dict[str, object]:
        """The settings a resumed study must share with the stored one (all but the trial count)."""
        fields = asdict(self)
        fields.pop("trials")
        if fields["memory_budget"] is None:  # studies from before budgets existed resume unchanged
            fields.pop("memory_budget")
        return fields


@dataclass(frozen=True)
class RunSettings:
    """The full run: one adapter configuration trained for whole epochs; the identity a resumed run matches."""

    task: str
    """'code', 'math' or 'custom'."""
    model: str
    """Model as given: built-in name, hub id, local directory or .gguf file."""
    lora: LoraSettings
    """The adapter to train."""
    learning_rate: float
    """Peak learning rate of the cosine schedule."""
    epochs: int = 4
    """Passes over the training data (at least 4 for LoRA instruction tuning, Biderman et al. 2024)."""
    batch_size: int = 4
    """Rows per optimizer step."""
    seq_len: int = 512
    """Tokens per packed row."""
    warmup_ratio: float = 0.1
    """Share of steps spent warming up (10 %, as in Biderman et al. 2024)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (1.0, as in Biderman et al. 2024)."""
    seed: int = 0
    """Seed for the data split, the adapters' initialisation and the data order."""
    train_examples: int | None = None
    """Train on the first N training examples only (None: all of them, up to the data loader's cap)."""
    data: str | None = None
    """Custom task: a JSONL/JSON/CSV/Parquet file or a hub dataset id."""
    prompt_column: str = "prompt"
    """Custom task: the column holding the instruction."""
    response_column: str = "response"
    """Custom task: the column holding the answer to learn."""

    def __post_init__(self) -> None:
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning rate must be between 0 and 1, got {self.learning_rate}")
        for name in ("epochs", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.train_examples is not None and self.train_examples < 1:
            raise ValueError(f"train_examples must be at least 1, got {self.train_examples}")
        self.study_settings()  # task, data and warm-up checked as a study would check them

    def study_settings(self) -> StudySettings:
        """The study settings that load and split the same data (one trial, one step: only the data matters)."""
        budget = TrainBudget(
            train_tokens=self.batch_size * self.seq_len,
            batch_size=self.batch_size,
            seq_len=self.seq_len,
            warmup_ratio=self.warmup_ratio,
            max_grad_norm=self.max_grad_norm,
        )
        return StudySettings(
            task=self.task,
            model=self.model,
            trials=1,
            budget=budget,
            seed=self.seed,
            data=self.data,
            prompt_column=self.prompt_column,
            response_column=self.response_column,
        )

    def identity(self) -> dict[str, object]:
        """Everything that decides the trained weights: a resumed run must match it."""
        return asdict(self)
