"""One trial: LoRA adapters on the base model, trained for a token budget and evaluated at intervals.

Reads top to bottom like a single-device LoRA recipe: set up adapters, optimiser and schedule; train;
evaluate; clean up (the adapters are unloaded so the next trial starts from the untouched base model; PiSSA's
rewritten base weights are put back).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tuner.data.packing import IGNORE_INDEX, PackedRows
from tuner.defaults import LORAPLUS_LR_RATIO
from tuner.settings import LoraSettings, TrainBudget
from tuner.study.objective import DivergenceGuard
from tuner.training.attention import packed_attention
from tuner.training.compilation import layer_compiler
from tuner.training.fused_elementwise import fused_elementwise
from tuner.training.fused_lora import fuse_lora_forwards
from tuner.training.loss import token_losses, training_loss
from tuner.training.pissa import PissaBase

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel

    from tuner.data.prepare import StudyData
    from tuner.training.runtime import Runtime

StepCallback = Callable[[int, float, float], None]
"""Called after each optimizer step with (step, training loss, training tokens per second)."""
EvalCallback = Callable[[int, float, float], "str | None"]
"""Called after each evaluation with (step, target loss, general loss); returns a reason to stop, or None."""
TrainedCallback = Callable[["PeftModel", "TrialResult"], None]
"""Called once a trial has trained to its budget, with the adapters still attached (to score them)."""


@dataclass
class TrialResult:
    """What one trial measured."""

    train_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) after every optimizer step."""
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)
    """(step, held-out target loss, held-out general loss)."""
    stopped_reason: str | None = None
    """Why the trial ended before its budget (divergence or pruning), else None."""
    train_tokens: int = 0
    train_seconds: float = 0.0
    compiled_after: int | None = None
    """The step after which the decoder layers were compiled (0: from the start), or None (eager throughout)."""

    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0


def row_order(rows: int, needed: int, seed: int) -> list[int]:
    """Row indices for `needed` draws: a fresh seeded permutation per epoch over the rows."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < needed:
        order.extend(torch.randperm(rows, generator=generator).tolist())
    return order[:needed]


def batch_tensors(rows: PackedRows, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs for some packed rows; no attention mask, so transformers masks by position ids."""
    import torch

    return {
        name: torch.from_numpy(getattr(rows, name)[indices]).to(device, non_blocking=True)
        for name in ("input_ids", "labels", "position_ids")
    }


def heldout_loss(model: PreTrainedModel, rows: PackedRows, batch_size: int, runtime: Runtime) -> float:
    """Mean loss per label token over packed rows."""
    measured = row_losses(model, rows, batch_size, runtime)
    tokens = sum(count for _, count in measured)
    return sum(loss for loss, _ in measured) / tokens if tokens else float("nan")


def row_losses(model: PreTrainedModel, rows: PackedRows, batch_size: int, runtime: Runtime) -> list[list[float]]:
    """[summed loss, label tokens] per packed row: what paired comparisons between two adapters need (the loss
    only at the positions that predict a label: tuner.training.loss.token_losses)."""
    import torch

    was_training = model.training
    model.eval()
    measured: list[list[float]] = []
    with torch.no_grad(), runtime.autocast():
        for start in range(0, len(rows), batch_size):
            batch = batch_tensors(rows, list(range(start, min(start + batch_size, len(rows)))), runtime.device)
            losses = token_losses(model, batch)
            counted = batch["labels"][:, 1:] != IGNORE_INDEX
            for row_loss, row_counted in zip(losses, counted, strict=True):
                measured.append([round(float(row_loss.sum()), 5), int(row_counted.sum())])
    model.train(was_training)
    return measured


def peft_config(lora: LoraSettings) -> LoraConfig:
    """peft's LoraConfig for our adapter settings (LoRA+ is the optimizer's: see adapter_optimizer)."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        target_modules=lora.target_modules(),
        lora_dropout=lora.dropout,
        task_type="CAUSAL_LM",
        **lora.peft_arguments(),  # type: ignore[arg-type]
    )


def adapter_optimizer(peft_model: PeftModel, lora: LoraSettings, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW without weight decay over the adapter (the paper trains with weight decay 0); for LoRA+, peft's
    optimizer, whose B matrices learn LORAPLUS_LR_RATIO times faster than the A matrices."""
    import torch

    if lora.variant == "loraplus":
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(
            model=peft_model,
            optimizer_cls=torch.optim.AdamW,
            lr=learning_rate,
            loraplus_lr_ratio=LORAPLUS_LR_RATIO,
            weight_decay=0.0,
        )
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    # The empty second group is where transformers' Trainer puts biases and norms (adapters have none): a full
    # run's checkpoints from before this helper hold two groups, and resume only into two.
    return torch.optim.AdamW([{"params": trainable}, {"params": []}], lr=learning_rate, weight_decay=0.0)


def full_optimizer(model: PreTrainedModel, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW without weight decay over every weight: full fine-tuning with the LoRA runs' optimizer settings."""
    import torch

    # Two groups, as Trainer would build them, so that its checkpoints resume into the same shape.
    return torch.optim.AdamW([{"params": list(model.parameters())}, {"params": []}], lr=learning_rate, weight_decay=0.0)


@dataclass
class AdapterSession:
    """Adapters on a model with their optimizer and trainable parameters, and PiSSA's kept base weights."""

    peft_model: PeftModel
    optimizer: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    pissa: PissaBase | None

    @contextlib.contextmanager
    def for_scoring(self) -> Iterator[PeftModel]:
        """The trained adapter as scoring takes it: switched off, the untouched base model (PiSSA as plain LoRA)."""
        if self.pissa is None:
            yield self.peft_model
        else:
            with self.pissa.as_lora(self.peft_model) as converted:
                yield converted


@contextlib.contextmanager
def adapter_session(
    model: PreTrainedModel, lora: LoraSettings, learning_rate: float, seed: int
) -> Iterator[AdapterSession]:
    """Adapters on `model` with their optimizer and trainable parameters; on leaving, the adapters are removed
    so the base model is exactly as it was (PiSSA's rewritten weights put back)."""
    import torch
    from peft import get_peft_model

    pissa = PissaBase(model, lora) if lora.variant == "pissa" else None
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, peft_config(lora))
    if pissa is not None:
        pissa.initialised(peft_model)
    fuse_lora_forwards(peft_model)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = adapter_optimizer(peft_model, lora, learning_rate)
    try:
        yield AdapterSession(peft_model, optimizer, trainable, pissa)
    finally:
        peft_model.unload()
        if pissa is not None:
            pissa.restore()
            pissa.close()
        del optimizer, peft_model
        if next(model.parameters()).is_cuda:
            torch.cuda.empty_cache()


@contextlib.contextmanager
def full_session(model: PreTrainedModel, learning_rate: float, seed: int) -> Iterator[AdapterSession]:
    """Every weight of `model` trainable, in float32 (AdamW's small steps vanish in bf16; a GPU trains under bf16
    autocast), with their optimizer; on leaving, the original weights and dtype are put back, so the next trial
    starts from the untouched base model. Holds a copy of the weights meanwhile (in CPU memory on a GPU)."""
    import torch

    dtype = next(model.parameters()).dtype
    kept = weights_copy(model)
    torch.manual_seed(seed)
    model.to(torch.float32)
    model.requires_grad_(True)
    optimizer = full_optimizer(model, learning_rate)
    try:
        yield AdapterSession(model, optimizer, list(model.parameters()), None)  # type: ignore[arg-type]
    finally:
        del optimizer
        model.requires_grad_(False)
        model.load_state_dict(kept)
        model.to(dtype)
        if next(model.parameters()).is_cuda:
            torch.cuda.empty_cache()


Weights = dict[str, "torch.Tensor"]
"""A model's state dict, held apart from it (in CPU memory)."""


def weights_copy(model: PreTrainedModel, dtype: torch.dtype | None = None) -> Weights:
    """A copy of the model's weights in CPU memory, its floating-point ones in `dtype` where given (a full run
    trains in float32 but is kept, as it is scored, in the model's own dtype)."""
    return {
        name: value.detach().to(
            "cpu", dtype=dtype if dtype is not None and value.is_floating_point() else None, copy=True
        )
        for name, value in model.state_dict().items()
    }


@contextlib.contextmanager
def swapped_weights(model: PreTrainedModel, weights: Weights) -> Iterator[PreTrainedModel]:
    """`model` with `weights` (e.g. a full fine-tuning run's, from weights_copy) in place of its own; its own are
    put back on leaving. Holds a copy of its own weights in CPU memory meanwhile."""
    own = weights_copy(model)
    model.load_state_dict(weights)  # copied into the model's tensors, cast to their dtype
    try:
        yield model
    finally:
        model.load_state_dict(own)


@contextlib.contextmanager
def checkpointing(model: PreTrainedModel, on: bool) -> Iterator[None]:
    """Within this block, with `on`, `model`'s decoder layers recompute their activations in the backward pass
    (non-reentrant: through frozen inputs too, so adapters need no input gradients). Attention by example stays on
    for the whole block: the recomputation, in the backward pass, must attend as the forward pass did."""
    if not on:
        yield
        return
    if hasattr(model, "activation_checkpointing_enable"):  # transformers' name from 5.x (the old one warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        disable = model.activation_checkpointing_disable
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        disable = model.gradient_checkpointing_disable
    try:
        with packed_attention(model):
            yield
    finally:
        disable()


def _steps(budget: TrainBudget, train_rows: int, seed: int) -> Iterator[tuple[int, list[int]]]:
    order = row_order(train_rows, budget.steps() * budget.batch_size, seed)
    for step in range(1, budget.steps() + 1):
        yield step, order[(step - 1) * budget.batch_size : step * budget.batch_size]


def run_trial(
    model: PreTrainedModel,
    data: StudyData,
    lora: LoraSettings | None,
    learning_rate: float,
    budget: TrainBudget,
    runtime: Runtime,
    *,
    start_loss: float,
    seed: int = 0,
    on_step: StepCallback | None = None,
    on_eval: EvalCallback | None = None,
    on_trained: TrainedCallback | None = None,
    compile_mode: str | None = None,
    gradient_checkpointing: bool = False,
) -> TrialResult:
    """Train LoRA adapters on `model` (or, with `lora` None, every weight: full fine-tuning) for the budget and
    evaluate them; `model` is left as it was. The decoder layers are compiled where the trial is long enough to
    repay it (tuner.training.compilation; `compile_mode` auto, on or off, else ADVISOR_COMPILE's), and not with
    `gradient_checkpointing` (each layer's activations recomputed in the backward pass)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    # Set up: adapters, optimiser, schedule (the session removes the adapters again at the end).
    session_of = adapter_session(model, lora, learning_rate, seed) if lora else full_session(model, learning_rate, seed)
    with (
        session_of as session,
        checkpointing(model, gradient_checkpointing),
        layer_compiler(
            session.peft_model, runtime.device.type, "off" if gradient_checkpointing else compile_mode
        ) as compiler,
        fused_elementwise(session.peft_model),
    ):
        peft_model, optimizer, trainable = session.peft_model, session.optimizer, session.trainable
        scheduler = get_cosine_schedule_with_warmup(optimizer, budget.warmup_steps(), budget.steps())
        guard = DivergenceGuard(start_loss)
        eval_steps = set(budget.eval_steps())
        result = TrialResult(compiled_after=0 if compiler.compiled else None)

        # Train.
        peft_model.train()
        for step, rows in _steps(budget, len(data.train), seed):
            started = time.perf_counter()
            batch = batch_tensors(data.train, rows, runtime.device)
            with runtime.autocast():
                loss = training_loss(peft_model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, budget.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss = float(loss.detach())  # waits for the device
            step_seconds = time.perf_counter() - started
            result.train_seconds += step_seconds
            if compiler.step_done(step, step_seconds, budget.steps()):
                result.compiled_after = step
            result.train_tokens += budget.tokens_per_step()
            result.train_curve.append((step, step_loss))
            if on_step is not None:
                on_step(step, step_loss, result.tokens_per_second())
            result.stopped_reason = guard.check(step, step_loss)
            if result.stopped_reason:
                break
            if step not in eval_steps:
                continue

            # Evaluate.
            target_loss = heldout_loss(peft_model, data.heldout, budget.batch_size, runtime)
            general_loss = heldout_loss(peft_model, data.general, budget.batch_size, runtime)
            result.evaluations.append((step, target_loss, general_loss))
            result.stopped_reason = guard.check_heldout(step, target_loss)
            if result.stopped_reason is None and on_eval is not None:
                result.stopped_reason = on_eval(step, target_loss, general_loss)
            if result.stopped_reason:
                break

        # Score what survived, adapters attached (PiSSA as the plain LoRA it amounts to, so that switching the
        # adapter off gives the untouched base model).
        if on_trained is not None and result.stopped_reason is None:
            with session.for_scoring() as scored:
                on_trained(scored, result)
    return result
