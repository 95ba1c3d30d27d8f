"""Training memory from a model's config, before anything runs (pure: no torch).

The estimate counts what a LoRA (or full) fine-tuning step holds at its peak, the end of the forward pass
into the loss: the weights, the trainable parameters and their optimizer state, the activations autograd
saves for the backward pass, and the logits with the loss's copies of them (gradients replace activations
during the backward pass, so they count only where they are larger). The
activation count follows a Llama-style decoder layer in transformers: which tensors autograd keeps depends
on which linear layers train (a frozen linear layer keeps nothing of its input).

Of the LoRA variants, two cost more than LoRA. DoRA (peft's DoraLinearLayer) also trains a magnitude vector (one
value per output feature of each adapted layer); keeps, per token, two more output-wide tensors per adapted layer
for the backward pass (the base output and the scaled adapter output); and while a layer runs forward it
materialises an in x in identity, B A, scale x B A and W + scale x B A in float32 to take the weight's norm, all
freed before the next layer: counted once, for the largest adapted layer, on top of the activations. PiSSA keeps a
copy of the adapted base weights in host memory to put them back after the trial: counted on the CPU only, where
host memory is what the budget limits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

from tuner.defaults import ATTENTION_MODULES, MLP_MODULES, VARIANTS
from tuner.errors import AdvisorError

DEVICES = ("cpu", "cuda")
TARGETS = ("attention", "mlp", "all", "full")
OPTIMIZERS = {"adamw": 2, "sgd": 0}
"""State tensors per trainable parameter."""
RUNTIME_OVERHEAD = {"cpu": 200 << 20, "cuda": 0}
"""Memory a step holds beyond the counted tensors: on the CPU the autograd engine, oneDNN scratch space and the
held-out batch (the intercept of peaks against tokens per step, fitted by bench/memory_estimate.py); on CUDA none
counted until that bench calibrates it there."""
LOGIT_COPIES = 3
"""Vocabulary-sized float32 tensors per token alive at once at the loss: the logits, their log-softmax, and
one gradient (the two gradients are never alive together; bench/memory_estimate.py checks the count)."""
LOGIT_CHUNK_BYTES = 128 * 2**20
"""Float32 logits the loss makes at once (tuner.training.loss.LOGIT_CHUNK_BYTES, which this module, being pure,
repeats): the loss takes the vocabulary projection a chunk of rows at a time, so no more than a chunk's logits exist
together, whatever the tokens per step."""


def logit_rows(tokens: int, vocab: int) -> int:
    """Rows of logits alive at once at the loss: the step's tokens, at most one chunk's rows."""
    return min(tokens, max(1, LOGIT_CHUNK_BYTES // (4 * vocab)))


QLORA_BYTES_PER_PARAM = 0.5 + 0.5 / 64 * 1.0625
"""NF4 weights with double-quantised block constants (QLoRA, Dettmers et al. 2023): about 4.13 bits."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama-style decoder that the estimate needs, read from a transformers config."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "tied_embeddings" and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """The shape from a config.json dict; ValueError naming a missing field."""
        try:
            hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            return cls(
                hidden=hidden,
                layers=int(config["num_hidden_layers"]),
                heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                intermediate=int(config["intermediate_size"]),
                vocab=int(config["vocab_size"]),
                tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            )
        except KeyError as missing:
            raise ValueError(f"the model config has no {missing.args[0]}: not a Llama-style decoder") from None

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder layer, by module name."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }

    def parameters(self) -> int:
        """Every parameter: embeddings, the head unless tied, each layer's linear layers and norms, the final norm."""
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.vocab * self.hidden + head + self.layers * per_layer + self.hidden


@dataclass(frozen=True)
class TrainSetup:
    """One training configuration whose memory is estimated."""

    device: str = "cpu"
    """'cpu' (float32, as the advisor trains there) or 'cuda' (bfloat16 weights and activations)."""
    targets: str = "all"
    """LoRA on 'attention', 'mlp' or 'all' linear layers, or 'full' fine-tuning."""
    rank: int = 16
    batch: int = 4
    seq_len: int = 512
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    quantized: bool = False
    """QLoRA: the frozen weights in 4-bit NF4."""
    variant: str = "lora"
    """The LoRA variant (see tuner.defaults.VARIANTS); DoRA and, on the CPU, PiSSA cost more than LoRA."""
    shards: int = 1
    """Full fine-tuning sharded over this many GPUs with FSDP (full shard): the figures are one GPU's."""

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("rank", "batch", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.quantized and self.targets == "full":
            raise ValueError("QLoRA trains adapters: quantized weights need LoRA targets, not 'full'")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown LoRA variant {self.variant!r}: choose from {', '.join(VARIANTS)}")
        if self.variant != "lora" and self.targets == "full":
            raise ValueError(f"{self.variant} is a LoRA variant: it needs LoRA targets, not 'full'")
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, got {self.shards}")
        if self.shards > 1 and self.targets != "full":
            raise ValueError("FSDP shards full fine-tuning's weights and optimizer state; LoRA's are small: use 1")

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    @property
    def activation_bytes(self) -> int:
        return 4 if self.device == "cpu" else 2

    def trained_modules(self) -> tuple[str, ...]:
        return {
            "attention": ATTENTION_MODULES,
            "mlp": MLP_MODULES,
            "all": ATTENTION_MODULES + MLP_MODULES,
            "full": ATTENTION_MODULES + MLP_MODULES,
        }[self.targets]


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part of a training step's peak, and their total."""

    weights: int
    trainable: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    trainable_parameters: int

    @property
    def total(self) -> int:
        """The step's peak. Gradients are freed after each step (zero_grad(set_to_none=True)) and grow back only
        as the backward pass frees activations, so they add to the peak only where they outweigh those."""
        transient = max(self.activations + self.logits, self.gradients)
        return self.weights + self.trainable + self.optimizer + transient + self.overhead

    def as_dict(self) -> dict[str, int]:
        return {
            **{f"{k}_bytes": v for k, v in asdict(self).items() if k != "trainable_parameters"},
            "trainable_parameters": self.trainable_parameters,
            "total_bytes": self.total,
        }


def trainable_parameters(shape: ModelShape, setup: TrainSetup) -> int:
    """Adapter parameters (r x (in + out) per adapted linear layer, and DoRA's magnitude of `out`), or every
    parameter for full fine-tuning."""
    if setup.targets == "full":
        return shape.parameters()
    linears = shape.linear_shapes()
    magnitude = 1 if setup.variant == "dora" else 0
    return shape.layers * sum(
        setup.rank * (linears[m][0] + linears[m][1]) + magnitude * linears[m][1] for m in setup.trained_modules()
    )


def dora_forward_values(shape: ModelShape, setup: TrainSetup) -> int:
    """Float32 values DoRA materialises while its largest adapted layer runs forward (0 for other variants):
    the in x in identity, B A, scale x B A and W + scale x B A, to take the weight's norm."""
    if setup.variant != "dora":
        return 0
    linears = shape.linear_shapes()
    return max(linears[m][0] * linears[m][0] + 3 * linears[m][0] * linears[m][1] for m in setup.trained_modules())


def saved_per_token_layer(shape: ModelShape, setup: TrainSetup) -> float:
    """Activation values autograd keeps per token in one decoder layer for the backward pass.

    Always: the two RMSNorm inputs and their reciprocal roots; attention's query, its keys and values repeated
    to every head, its output and log-sum-exp; the MLP's gate output, its activation and the up projection.
    A trained linear layer also keeps its input (q/k/v share the attention norm's output, gate/up the MLP
    norm's); each adapter keeps its r-wide intermediate. PyTorch's fused attention keeps no heads x sequence
    probabilities on either device, so nothing grows with the square of the row length.
    """
    h, q = shape.hidden, shape.heads * shape.head_dim
    saved = 2 * h + 2 + 4 * q + shape.heads + 3 * shape.intermediate
    modules = setup.trained_modules()
    if any(m in modules for m in ("q_proj", "k_proj", "v_proj")):
        saved += h
    if "o_proj" in modules:
        saved += q
    if any(m in modules for m in ("gate_proj", "up_proj")):
        saved += h
    if "down_proj" in modules:
        saved += shape.intermediate
    if setup.targets != "full":
        saved += setup.rank * len(modules)
    if setup.variant == "dora":  # the base output and the scaled adapter output, per adapted layer
        saved += 2 * sum(shape.linear_shapes()[m][1] for m in modules)
    return saved


def estimate(shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """The peak memory of one training step, by part."""
    full = setup.targets == "full"
    weight_bytes = 4 if setup.device == "cpu" else 2
    frozen_params = shape.parameters() - (shape.parameters() if full else 0)
    trainable = trainable_parameters(shape, setup)
    # peft keeps adapters in float32 (autocast_adapter_dtype); full fine-tuning keeps float32 weights too (the
    # advisor trains them so on a GPU as well, under bf16 autocast: AdamW's small steps vanish in bf16).
    trainable_bytes = 4
    if setup.quantized:
        # Only the decoder layers' linear weights are 4-bit; PEFT's k-bit preparation keeps the embeddings, the head
        # and the norms in float32.
        linear = shape.layers * sum(i * o for i, o in shape.linear_shapes().values())
        weights = math.ceil(linear * QLORA_BYTES_PER_PARAM) + (frozen_params - linear) * 4
    else:
        weights = math.ceil(frozen_params * weight_bytes)
    if setup.variant == "pissa" and setup.device == "cpu":  # the adapted base weights, kept to put them back
        linears = shape.linear_shapes()
        weights += shape.layers * sum(linears[m][0] * linears[m][1] for m in setup.trained_modules()) * weight_bytes
    per_layer = saved_per_token_layer(shape, setup)
    if setup.gradient_checkpointing:
        # Only each layer's input is kept; one layer's activations are rebuilt at a time in the backward pass.
        activation_values = setup.tokens * (shape.layers * shape.hidden + per_layer)
    else:
        activation_values = setup.tokens * shape.layers * per_layer
    shards = setup.shards
    if shards > 1:
        # Each GPU keeps 1/N of the float32 weights, their gradients and AdamW's state, and gathers whole layers as
        # they run: the layer computing and the next one prefetched.
        linears = shape.linear_shapes()
        weights = 2 * sum(i * o for i, o in linears.values()) * trainable_bytes
    return MemoryEstimate(
        weights=weights,
        trainable=math.ceil(trainable * trainable_bytes / shards),
        gradients=math.ceil(trainable * trainable_bytes / shards),
        optimizer=math.ceil(trainable * trainable_bytes * OPTIMIZERS[setup.optimizer] / shards),
        activations=math.ceil(activation_values * setup.activation_bytes) + dora_forward_values(shape, setup) * 4,
        logits=logit_rows(setup.tokens, shape.vocab) * shape.vocab * 4 * LOGIT_COPIES,  # the loss runs in float32
        overhead=RUNTIME_OVERHEAD[setup.device],
        trainable_parameters=trainable,
    )


PARTS = ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead")


@functools.cache
def model_shape(model: str) -> ModelShape:
    """The shape of a model from its config, without loading its weights (a GGUF model is cached once).

    Kept per process: the app asks on every keystroke of a budget, and a hub model's config is a request.
    """
    from tuner.models.load import model_config, resolve_model

    try:
        return ModelShape.from_config(model_config(resolve_model(model)))
    except ValueError as error:
        raise AdvisorError(f"{model}: {error}") from None
