"""transformers' Trainer over a full run's packed rows: its arguments, the callbacks that report and compile, the
resume from the last complete checkpoint, and what the training did."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.events import CheckpointSaved, EpochEvaluated, Stage, TrainProgress, TrainReporter, TrainStarted
from tuner.faults import fault_cause
from tuner.fullrun.checkpoints import CHECKPOINTS, KEPT_CHECKPOINTS, latest_checkpoint
from tuner.settings import RunSettings

if TYPE_CHECKING:
    import datasets
    from transformers import TrainerCallback

    from tuner.data.packing import PackedRows
    from tuner.data.prepare import StudyData
    from tuner.fullrun.distributed import StepOrder
    from tuner.fullrun.scores import EpochScorer
    from tuner.fullrun.train import RunOptions
    from tuner.training.compilation import LayerCompiler
    from tuner.training.runtime import Runtime


def packed_dataset(rows: PackedRows, padding: int = 0) -> datasets.Dataset:
    """Packed rows as a torch-formatted dataset for Trainer (input ids, labels, restarting position ids), with
    `padding` rows after them whose labels are all ignored (a distributed run's last batch made whole)."""
    import datasets
    import numpy as np

    from tuner.data.packing import IGNORE_INDEX

    columns = {name: getattr(rows, name) for name in ("input_ids", "labels", "position_ids")}
    if padding:
        shape = (padding, rows.seq_len)
        filler = {
            "input_ids": np.zeros(shape, dtype=rows.input_ids.dtype),
            "labels": np.full(shape, IGNORE_INDEX, dtype=rows.labels.dtype),
            "position_ids": np.broadcast_to(np.arange(rows.seq_len, dtype=rows.position_ids.dtype), shape),
        }
        columns = {name: np.concatenate([columns[name], filler[name]]) for name in columns}
    return datasets.Dataset.from_dict(columns).with_format("torch")


def _callbacks(report: TrainReporter, tokens_per_step: int, scorer: EpochScorer | None) -> list[TrainerCallback]:
    from transformers import TrainerCallback

    class Reporting(TrainerCallback):
        """Turns Trainer's logs and saves into our events; saves a checkpoint at each epoch's end too."""

        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.first_step: int | None = None
            self.saved_step: int | None = None
            self.target_loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.first_step = state.global_step
            report(TrainStarted(state.max_steps, int(args.num_train_epochs), state.global_step, args.output_dir))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                trained = (state.global_step - (self.first_step or 0)) * tokens_per_step
                speed = trained / max(time.perf_counter() - self.started, 1e-9)
                report(TrainProgress(state.global_step, state.max_steps, state.epoch or 0.0, logs["loss"], speed))
            # Trainer evaluates each held-out set in turn and logs them apart: target first, then general.
            if "eval_target_loss" in logs:
                self.target_loss = logs["eval_target_loss"]
            if "eval_general_loss" in logs and self.target_loss is not None:
                epoch = round(state.epoch or 0)
                report(EpochEvaluated(epoch, state.global_step, self.target_loss, logs["eval_general_loss"]))

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if self.saved_step != state.global_step:
                control.should_save = True  # a checkpoint at every epoch's end, besides every save_steps
            if scorer is not None:
                scorer.score_epoch(kwargs["model"], round(state.epoch or 0))
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.saved_step = state.global_step
            report(CheckpointSaved(state.global_step, str(Path(args.output_dir) / f"checkpoint-{state.global_step}")))

    return [Reporting()]


def compiling(compiler: LayerCompiler, report: TrainReporter) -> TrainerCallback:
    """A callback timing Trainer's steps for `compiler`, which compiles the decoder layers once the steps left
    repay it (tuner.training.compilation), and saying so."""
    import torch
    from transformers import TrainerCallback

    class Compiling(TrainerCallback):
        def __init__(self) -> None:
            self.first_step = 0
            self.started = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.first_step = state.global_step  # a resumed run counts from its checkpoint

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if compiler.decided:
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the step's own time, not its launch's
            done, total = state.global_step - self.first_step, state.max_steps - self.first_step
            decided = compiler.step_done(done, time.perf_counter() - self.started, total)
            if decided:
                report(Stage(decided))

    return Compiling()


def epoch_setter(order: StepOrder) -> TrainerCallback:
    """A callback giving the step order each epoch's number as it begins: a resumed run's data loader, wrapped once
    more to skip the steps already trained, no longer passes Trainer's set_epoch down to it."""
    import math

    from transformers import TrainerCallback

    class EpochSetter(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            order.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))  # a resumed run begins mid-epoch

    return EpochSetter()


def run_trainer(
    model: Any,
    optimizer: Any,
    settings: RunSettings,
    out_dir: Path,
    data: StudyData,
    options: RunOptions,
    runtime: Runtime,
    report: TrainReporter,
    callbacks: Sequence[TrainerCallback],
    epoch_scorer: EpochScorer | None,
) -> tuple[Any, Path | None]:
    """Train with transformers' Trainer over the packed rows (the cosine schedule, clipping, checkpoints, held-out
    losses; our reporting callbacks, then `callbacks`), from the last complete checkpoint if a killed run left one;
    returns the Trainer and the checkpoint resumed from. Its loss is the trials' (tuner.training.loss.training_loss:
    attention by example, logits at labelled positions only, in chunks), equal to the model's own; the decoder
    layers are compiled once the first steps show the rest repays it (tuner.training.compilation)."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from tuner.fullrun.distributed import StepOrder, ranks, shard_loss, summed_forward
    from tuner.training.attention import packed_attention
    from tuner.training.compilation import layer_compiler
    from tuner.training.fused_elementwise import fused_elementwise
    from tuner.training.loss import training_loss

    recipe, seed = settings.recipe, settings.data.seed
    world = ranks().world
    order = StepOrder(len(data.train), recipe.batch_size, seed) if world > 1 else None

    class PackedTrainer(Trainer):
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            # One batch per optimizer step (no gradient accumulation), so the mean per label token is the loss; over
            # several ranks, each rank's share of the whole step's mean (tuner.fullrun.distributed).
            loss = shard_loss(model, inputs, world) if world > 1 and model.training else training_loss(model, inputs)
            return (loss, {"loss": loss}) if return_outputs else loss

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return order if order is not None else super()._get_train_sampler(train_dataset)

    arguments = TrainingArguments(
        output_dir=str(out_dir / CHECKPOINTS),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size // world,  # each rank its part of the one-process batch
        per_device_eval_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=recipe.warmup_ratio,  # below 1: a share of the steps
        max_grad_norm=recipe.max_grad_norm,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=KEPT_CHECKPOINTS,
        eval_strategy="epoch",
        seed=seed,
        data_seed=seed,
        bf16=runtime.is_cuda and runtime.dtype == torch.bfloat16,
        use_cpu=not runtime.is_cuda,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        ddp_backend=("nccl" if runtime.is_cuda else "gloo") if world > 1 else None,
        ddp_find_unused_parameters=False if world > 1 else None,  # every adapter (or weight) trains each step
        ddp_timeout=6 * 3600,  # the other ranks wait in the first collective while rank 0 scores the base model
        gradient_checkpointing=options.gradient_checkpointing,
        # Non-reentrant: recomputes through frozen inputs too, so an adapter needs no input gradients.
        gradient_checkpointing_kwargs={"use_reentrant": False} if options.gradient_checkpointing else None,
    )
    compile_mode = "off" if options.gradient_checkpointing else None  # recomputed layers are not compiled
    with (
        layer_compiler(model, runtime.device.type, compile_mode) as compiler,
        fused_elementwise(model),
        # With checkpointing, the backward pass recomputes each layer: it must attend by example as the forward did.
        packed_attention(model) if options.gradient_checkpointing else contextlib.nullcontext(),
        summed_forward(model) if world > 1 else contextlib.nullcontext(),
    ):
        trainer = PackedTrainer(
            model=model,
            args=arguments,
            train_dataset=packed_dataset(data.train, order.padding if order is not None else 0),
            eval_dataset={"target": packed_dataset(data.heldout), "general": packed_dataset(data.general)},
            callbacks=[
                *_callbacks(report, recipe.batch_size * recipe.seq_len, epoch_scorer),
                compiling(compiler, report),
                *([epoch_setter(order)] if order is not None else []),
                *callbacks,
            ],
            # AdamW without weight decay (LoRA+'s for loraplus); Trainer wraps it in the cosine schedule.
            optimizers=(optimizer, None),
        )
        trainer.remove_callback(PrinterCallback)  # our reporter shows the logs
        resume = latest_checkpoint(out_dir / CHECKPOINTS, lambda message: report(Stage(message)))
        try:
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except Exception as error:
            cause = fault_cause(error)
            if cause is None:
                raise
            kept = latest_checkpoint(out_dir / CHECKPOINTS)  # the checkpoint it was writing goes
            since = f"from {kept.name}" if kept is not None else "from the start"
            raise AdvisorError(f"training in {out_dir} stopped: {cause}; the same command resumes {since}") from None
    return trainer, resume


def training_history(trainer: Any, data: StudyData, seconds: float, resumed: Path | None) -> dict[str, Any]:
    """What the training did: steps, epochs, loss curve and the held-out losses after each epoch."""
    logs = trainer.state.log_history
    general = {log["step"]: log["eval_general_loss"] for log in logs if "eval_general_loss" in log}
    curve = [(log["step"], log["loss"], log.get("epoch", 0.0)) for log in logs if "loss" in log]
    last_epoch = [loss for _, loss, epoch in curve if epoch > trainer.state.epoch - 1]
    return {
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_rows": len(data.train),
        "train_examples": data.train_examples,
        "train_tokens": data.train.tokens(),
        "last_epoch_train_loss": sum(last_epoch) / len(last_epoch) if last_epoch else None,
        "seconds_this_session": round(seconds, 1),
        "resumed_from": resumed.name if resumed else None,
        "loss_curve": [[step, round(loss, 5)] for step, loss, _ in curve],
        "epoch_losses": [
            {
                "epoch": round(log["epoch"]),
                "step": log["step"],
                "target_loss": log["eval_target_loss"],
                "general_loss": general.get(log["step"]),
            }
            for log in logs
            if "eval_target_loss" in log
        ],
    }
