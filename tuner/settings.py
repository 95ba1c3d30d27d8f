"""The configuration hierarchy (pure: no torch): data settings and a training recipe, composed by the study
settings, the full run's settings and the preset (their defaults, bounds and choices: tuner.defaults).

    DataSettings      task, data source, columns, seed of the shuffle and split
    LoraSettings      rank, alpha, targets, dropout, variant
    TrainingRecipe    LoraSettings + rate, epochs, batch, row length, warm-up, clipping, quantisation
    TrainBudget       one trial: tokens, batch, row length, warm-up, clipping, evaluations (tuner.trial_budget)
    StudySettings     model + DataSettings + TrainBudget + trials, goal, memory and study budgets, quantisation
    RunSettings       model + DataSettings + TrainingRecipe + training examples
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tuner.defaults import (
    ATTENTION_MODULES,
    DATA_FORMATS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_GOAL,
    DEFAULT_MAX_GRAD_NORM,
    DEFAULT_SEQ_LEN,
    DEFAULT_WARMUP_RATIO,
    METHODS,
    MLP_MODULES,
    PISSA_INIT,
    QUANTIZE_MODES,
    REGIMES,
    STUDY_QUANTIZE_MODES,
    TARGET_SETS,
    TASKS,
    VARIANT_LABELS,
    VARIANTS,
)
from tuner.study.budget import StudyBudget
from tuner.trial_budget import Packing, TrainBudget, check_step_shape

__all__ = [
    "DataSettings",
    "LoraSettings",
    "Packing",
    "RunSettings",
    "StudySettings",
    "TrainBudget",
    "TrainingRecipe",
    "check_quantize_mode",
    "check_step_shape",
]


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
    variant: str = "lora"
    """One of VARIANTS."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be at least 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if self.targets not in TARGET_SETS:
            raise ValueError(f"targets must be one of {', '.join(TARGET_SETS)}, got {self.targets!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown LoRA variant {self.variant!r}: choose from {', '.join(VARIANTS)}")

    def target_modules(self) -> list[str] | str:
        """The value for peft's LoraConfig.target_modules ('all-linear' means every linear layer but the head)."""
        if self.targets == "attention":
            return list(ATTENTION_MODULES)
        if self.targets == "mlp":
            return list(MLP_MODULES)
        return "all-linear"

    def peft_arguments(self) -> dict[str, object]:
        """The variant's arguments to peft's LoraConfig (none for LoRA, nor for LoRA+, which is the optimizer's)."""
        return {
            "rslora": {"use_rslora": True},  # scaling alpha / sqrt(r)
            "dora": {"use_dora": True},
            "pissa": {"init_lora_weights": PISSA_INIT},
        }.get(self.variant, {})


def check_quantize_mode(quantize: str | None, method: str, allowed: tuple[str, ...] = QUANTIZE_MODES) -> None:
    """ValueError for a quantisation no run takes, or QLoRA asked of full fine-tuning."""
    if quantize is not None and quantize not in allowed:
        raise ValueError(f"quantize must be one of {', '.join(allowed)}, got {quantize!r}")
    if method == "full" and quantize not in (None, "none"):
        raise ValueError(
            "QLoRA trains an adapter on frozen 4-bit weights; full fine-tuning trains every weight, which cannot be "
            "4-bit: drop --quantize, or use --method lora"
        )


@dataclass(frozen=True)
class DataSettings:
    """What is trained on and how it is split: the same for a study and the full run that follows it."""

    task: str
    """'code', 'math' or 'custom'."""
    source: str | None = None
    """Custom task: a JSONL/JSON/CSV/Parquet file or a hub dataset id."""
    prompt_column: str = "prompt"
    """Custom task: the column holding the instruction."""
    response_column: str = "response"
    """Custom task: the column holding the answer to learn."""
    seed: int = 0
    """Seed of the shuffle that decides the held-out split (and, in a study, the sampler and each trial)."""
    format: str = "auto"
    """Custom task: the data's format (tuner.data.formats), or 'auto': found from the columns."""
    regime: str | None = None
    """'ift' (loss on the responses), 'cpt' (loss on every token); None: cpt for plain text, ift otherwise."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name, value, allowed in (("format", self.format, DATA_FORMATS), ("regime", self.regime, REGIMES)):
            if value not in allowed and not (name == "regime" and value is None):
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.format != "auto" and self.task != "custom":
            raise ValueError(f"--format names the format of your own data (--task custom), not the {self.task} data's")
        if self.task == "custom" and not self.source:
            raise ValueError("the custom task needs --data: a JSONL, JSON, CSV or Parquet file, or a hub dataset id")

    def where(self) -> str:
        """How an error names the data: the file or hub id, or the task's data."""
        return f"{self.source}" if self.task == "custom" else f"the {self.task} data"


@dataclass(frozen=True)
class TrainingRecipe:
    """One adapter and how it is trained: what a preset holds and what the full run trains."""

    lora: LoraSettings
    """Rank, alpha, target modules, dropout and variant."""
    learning_rate: float
    """Peak learning rate of the cosine schedule; always stored together with alpha."""
    epochs: int = DEFAULT_EPOCHS
    """Passes over the training data."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Rows per optimizer step."""
    seq_len: int = DEFAULT_SEQ_LEN
    """Tokens per packed row."""
    warmup_ratio: float = DEFAULT_WARMUP_RATIO
    """Share of steps spent warming up."""
    max_grad_norm: float = DEFAULT_MAX_GRAD_NORM
    """Gradient clipping."""
    method: str = "lora"
    """'lora' (the adapter in `lora`) or 'full' (every weight trained; `lora` is then unused)."""
    quantize: str | None = None
    """'nf4': the adapter trains on the base model's weights in 4-bit NF4 (QLoRA); None: in 16 bits."""

    def __post_init__(self) -> None:
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning rate must be between 0 and 1, got {self.learning_rate}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        check_step_shape(self.batch_size, self.seq_len, self.warmup_ratio, self.max_grad_norm)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "full" and self.lora.variant != "lora":
            raise ValueError(f"{VARIANT_LABELS[self.lora.variant]} is a LoRA variant: full fine-tuning has none")
        check_quantize_mode(self.quantize, self.method, allowed=("nf4",))
        if self.quantize is not None and self.lora.variant == "pissa":
            raise ValueError("PiSSA rewrites the base weights it starts from, which QLoRA keeps in 4 bits: drop one")

    @property
    def is_full(self) -> bool:
        """Full fine-tuning: every weight trained, no adapter."""
        return self.method == "full"

    def packing(self) -> Packing:
        """Rows of the recipe's length, batches of its size, the default held-out rows."""
        return Packing(self.seq_len, self.batch_size)


def _data_fields(data: DataSettings) -> dict[str, object]:
    """DataSettings in the flat shape settings.json and stored identities have always had (format and regime only
    where set, so a study from before them keeps its identity)."""
    fields: dict[str, object] = {
        "seed": data.seed,
        "data": data.source,
        "prompt_column": data.prompt_column,
        "response_column": data.response_column,
    }
    extra = {"format": data.format if data.format != "auto" else None, "regime": data.regime}
    return {**fields, **{key: value for key, value in extra.items() if value is not None}}


def _data_from(fields: dict[str, Any]) -> DataSettings:
    return DataSettings(
        task=fields["task"],
        source=fields.get("data"),
        prompt_column=fields.get("prompt_column", "prompt"),
        response_column=fields.get("response_column", "response"),
        seed=int(fields.get("seed", 0)),
        format=fields.get("format", "auto"),
        regime=fields.get("regime"),
    )


@dataclass(frozen=True)
class StudySettings:
    """What one `advisor tune` study searches for; the identity a resumed study must match."""

    model: str
    """Model as given: built-in name, hub id, local directory or .gguf file."""
    data: DataSettings
    """Task, data source, columns and the seed of the split, the sampler and the trials."""
    trials: int
    """Trials that must reach an end (complete, pruned or failed) in the study."""
    budget: TrainBudget
    """Training tokens, batch and evaluation per trial."""
    goal: float = DEFAULT_GOAL
    """0 learns most, 1 forgets least: the weight of the forgetting term in the objective."""
    memory_budget: int | None = None
    """Bytes a trial may use (GPU memory, or RAM on CPU); configurations estimated above it are not run."""
    search_budget: StudyBudget | None = None
    """Training tokens or seconds the whole study may spend (None: `trials` trials, however long they take)."""
    quantize: str | None = None
    """The base model's weights in the trials (STUDY_QUANTIZE_MODES; 'search': each trial draws 16 or 4 bits); None:
    16-bit, or 4-bit NF4 (QLoRA) where only that fits the memory budget."""

    def __post_init__(self) -> None:
        check_quantize_mode(self.quantize, "lora", allowed=STUDY_QUANTIZE_MODES)
        if self.memory_budget is not None and self.memory_budget < 1:
            raise ValueError(f"memory budget must be positive, got {self.memory_budget}")
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        tokens = self.search_budget.tokens if self.search_budget is not None else None
        if tokens is not None and tokens < self.budget.train_tokens:
            raise ValueError(
                f"a study budget of {tokens:,} tokens is below one trial ({self.budget.train_tokens:,} tokens); "
                "raise --search-budget or lower --trial-tokens"
            )
        if not 0.0 <= self.goal <= 1.0:
            raise ValueError(f"goal must be between 0 (learn most) and 1 (forget least), got {self.goal}")

    @property
    def task(self) -> str:
        """The data's task, which names the study."""
        return self.data.task

    def to_json(self) -> dict[str, Any]:
        """The settings as settings.json holds them (flat, the shape every version has written)."""
        return {
            "task": self.data.task,
            "model": self.model,
            "trials": self.trials,
            "budget": asdict(self.budget),
            "goal": self.goal,
            **_data_fields(self.data),
            "memory_budget": self.memory_budget,
            **({"search_budget": self.search_budget.to_json()} if self.search_budget is not None else {}),
            **({"quantize": self.quantize} if self.quantize is not None else {}),  # where given: older studies resume
        }

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> StudySettings:
        """Settings read back from settings.json (keys it does not know, such as 'storage', are ignored)."""
        return cls(
            model=fields["model"],
            data=_data_from(fields),
            trials=int(fields["trials"]),
            budget=TrainBudget(**fields["budget"]),
            goal=float(fields.get("goal", DEFAULT_GOAL)),
            memory_budget=fields.get("memory_budget"),
            search_budget=StudyBudget.from_json(fields["search_budget"]) if fields.get("search_budget") else None,
            quantize=fields.get("quantize"),
        )

    def identity(self) -> dict[str, object]:
        """The settings a resumed study must share with the stored one (all but the trial count and the budget,
        which a resumed study may raise)."""
        fields = self.to_json()
        fields.pop("trials")
        fields.pop("search_budget", None)
        if fields["memory_budget"] is None:  # studies from before budgets existed resume unchanged
            fields.pop("memory_budget")
        return fields


@dataclass(frozen=True)
class RunSettings:
    """The full run: one training recipe on the study's data for whole epochs; the identity a resumed run matches."""

    model: str
    """Model as given: built-in name, hub id, local directory or .gguf file."""
    data: DataSettings
    """Task, data source, columns and the seed of the split (also the adapters' initialisation and data order)."""
    recipe: TrainingRecipe
    """The adapter and how it trains."""
    train_examples: int | None = None
    """Train on the first N training examples only (None: all of them, up to the data loader's cap)."""

    def __post_init__(self) -> None:
        if self.train_examples is not None and self.train_examples < 1:
            raise ValueError(f"train_examples must be at least 1, got {self.train_examples}")

    @property
    def task(self) -> str:
        """The data's task."""
        return self.data.task

    def identity(self) -> dict[str, object]:
        """Everything that decides the trained weights, flat as train_settings.json has always held it."""
        recipe = asdict(self.recipe)
        if self.recipe.is_full:  # no adapter: the LoRA settings play no part
            recipe.pop("lora")
        else:  # runs from before full fine-tuning and variants existed resume unchanged
            recipe.pop("method")
            if recipe["lora"]["variant"] == "lora":
                recipe["lora"].pop("variant")
        if recipe["quantize"] is None:  # 16-bit, as every run from before QLoRA
            recipe.pop("quantize")
        return {
            "task": self.data.task,
            "model": self.model,
            **recipe,
            **_data_fields(self.data),
            "train_examples": self.train_examples,
        }
