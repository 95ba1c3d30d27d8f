"""The recommended full run: LoRA instruction tuning for whole epochs with transformers' Trainer, resumable.

Reads top to bottom like a training recipe: set up data, model and adapters; train with checkpoints every
N steps and at each epoch (a killed run resumes from the last complete one); save the adapter (and a
merged model on request); score learning and forgetting against the base model; write the report.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.events import (
    CheckpointSaved,
    EpochEvaluated,
    RunScored,
    Stage,
    TrainFinished,
    TrainProgress,
    TrainReporter,
    TrainStarted,
    ignore,
)
from tuner.faults import fault_cause
from tuner.fullrun.report import ADAPTER, FULL_MODEL, MERGED, run_report
from tuner.models.load import is_complete
from tuner.records import RunReport
from tuner.scoring.benchmarks import LEARNING_TASK, EvalSettings, forgetting_score
from tuner.settings import RunSettings

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

    from tuner.data.packing import PackedRows
    from tuner.data.prepare import StudyData
    from tuner.scoring.evaluation import TaskScore
    from tuner.training.compilation import LayerCompiler
    from tuner.training.runtime import Runtime

CHECKPOINTS = "checkpoints"
SETTINGS_FILE = "train_settings.json"
EPOCH_SCORES = "epoch_scores.json"
PISSA_SCRATCH = "pissa"
"""PiSSA's initial adapter while the run trains (written at each start, removed once the adapter is saved)."""
KEPT_CHECKPOINTS = 2
"""Checkpoints kept on disk: the newest, and the one before it in case the newest was cut short."""


@dataclass(frozen=True)
class RunOptions:
    """What the full run does besides training; none of it changes the trained weights."""

    save_steps: int = 200
    """Optimizer steps between checkpoints (one is also saved at each epoch's end)."""
    scoring: EvalSettings | None = None
    """Benchmarks scored at the end (None: no scoring)."""
    score_each_epoch: bool = False
    """Also score the adapter after every epoch."""
    merge: bool = False
    """Also save the base model with the adapter merged into it."""

    def __post_init__(self) -> None:
        if self.save_steps < 1:
            raise ValueError(f"save_steps must be at least 1, got {self.save_steps}")


def steps_per_epoch(train_rows: int, batch_size: int) -> int:
    """Optimizer steps in one pass over the rows (the last, partial batch counts as a step)."""
    return -(-train_rows // batch_size)


def latest_checkpoint(checkpoints: Path, said: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete checkpoint; newer ones cut short by a kill or a full disk are removed (and `said`).

    Trainer writes a checkpoint's trainer_state.json last, so a checkpoint whose state file reads back
    whole is complete.
    """
    if not checkpoints.is_dir():
        return None
    found = [p for p in checkpoints.iterdir() if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")), reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)  # cut short mid-save: the one before it is whole
            if said is not None:
                said(f"removed {path}: it was cut short while being written")
    return None


def packed_dataset(rows: PackedRows) -> datasets.Dataset:
    """Packed rows as a torch-formatted dataset for Trainer (input ids, labels, restarting position ids)."""
    import datasets

    columns = {name: getattr(rows, name) for name in ("input_ids", "labels", "position_ids")}
    return datasets.Dataset.from_dict(columns).with_format("torch")


def check_identity(out_dir: Path, settings: RunSettings) -> None:
    """Refuse to resume a run directory that trained other settings; record them in a new one."""
    from tuner.rundir import write_json

    wanted = json.loads(json.dumps(settings.identity()))
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            differing = sorted(k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k))
            raise AdvisorError(
                f"{out_dir} holds a training run with other settings ({', '.join(differing)} differ); "
                "resume it with the same settings or choose another --out"
            )
        return
    write_json(path, wanted)


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


class EpochScorer:
    """Scores the adapter after an epoch and keeps the figures in the run directory (they survive a resume)."""

    def __init__(self, out_dir: Path, score: Any) -> None:
        self.path = out_dir / EPOCH_SCORES
        self.score = score

    def stored(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def score_epoch(self, model: PeftModel, epoch: int) -> None:
        from tuner.rundir import write_json

        scores = self.score(model, f"epoch {epoch}")
        write_json(self.path, {**self.stored(), str(epoch): {n: s.as_dict() for n, s in scores.items()}})


def train_run(
    settings: RunSettings,
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    options: RunOptions | None = None,
    report: TrainReporter = ignore,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunReport:
    """Train the adapter for its epochs (resuming from the last checkpoint in `out_dir`), score it, write the report.

    `callbacks` are extra transformers TrainerCallbacks (tests use one to kill the run mid-epoch).
    """
    import torch
    from peft import PeftModel, get_peft_model

    from tuner.data.prepare import prepare_study_data
    from tuner.models.load import hub_id, load_model, load_tokenizer, loaded_identity, resolve_model, write_directory
    from tuner.rundir import run_dir_lock
    from tuner.training.fused_lora import fuse_lora_forwards
    from tuner.training.pissa import PissaBase
    from tuner.training.runtime import pick_runtime, quiet_libraries
    from tuner.training.trial import adapter_optimizer, peft_config

    options = options or RunOptions()
    quiet_libraries()
    if out_dir.exists() and not out_dir.is_dir():
        raise AdvisorError(f"--out {out_dir} exists and is not a directory")
    source = resolve_model(settings.model)
    report(Stage(f"loading tokenizer of {source.describe()}"))
    tokenizer = load_tokenizer(source)
    adapter_dir = out_dir / ADAPTER
    if settings.recipe.is_full and options.merge:
        raise AdvisorError(f"--merge merges a LoRA adapter; full fine-tuning saves the whole model in {FULL_MODEL}/")
    data: StudyData | None = None
    trained_dir = out_dir / (FULL_MODEL if settings.recipe.is_full else ADAPTER)
    if not is_complete(trained_dir):  # a finished run is only scored and reported again: no data to prepare
        report(Stage(f"preparing {settings.task} data"))
        packing = settings.recipe.packing()
        data = prepare_study_data(settings.data, packing, tokenizer, data_dir, settings.train_examples)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(out_dir):
        check_identity(out_dir, settings)
        runtime = pick_runtime()
        report(Stage(f"loading {source.describe()} on {runtime.describe()}"))
        model = load_model(source, runtime.device, runtime.dtype)
        identity = loaded_identity(source, model)
        scorer = _scorer(settings, options, tokenizer, data_dir, runtime, identity, report)
        epoch_scorer = EpochScorer(out_dir, scorer) if scorer is not None and options.score_each_epoch else None

        started = time.perf_counter()
        recipe, seed = settings.recipe, settings.data.seed
        if recipe.is_full:
            history, scores = _full_run(
                model, settings, out_dir, data, tokenizer, options, scorer, epoch_scorer, report, callbacks, runtime
            )
            result = run_report(settings, options.scoring, out_dir, history, scores, runtime.describe())
            report(TrainFinished(result))
            return result
        elif data is None:
            report(Stage(f"already trained: loading the adapter from {adapter_dir}"))
            peft_model = PeftModel.from_pretrained(model, adapter_dir)
            history: dict[str, Any] = json.loads((adapter_dir / "training.json").read_text(encoding="utf-8"))
        else:
            # Set up: adapters (seeded; PiSSA's rewrite of the base weights kept to undo), datasets, Trainer.
            pissa = PissaBase(model, recipe.lora, out_dir / PISSA_SCRATCH) if recipe.lora.variant == "pissa" else None
            torch.manual_seed(seed)
            peft_model = get_peft_model(model, peft_config(recipe.lora))
            if pissa is not None:
                pissa.initialised(peft_model)  # on resume too: the seeded initialisation is the same
            fuse_lora_forwards(peft_model)
            optimizer = adapter_optimizer(peft_model, recipe.lora, recipe.learning_rate)

            # Train, from the last complete checkpoint if a killed run left one.
            trainer, resume = _train(
                peft_model, optimizer, settings, out_dir, data, options, runtime, report, callbacks, epoch_scorer
            )
            history = _history(trainer, data, time.perf_counter() - started, resume)

            # Save the adapter in PEFT format, whole or not at all.
            peft_model.peft_config["default"].base_model_name_or_path = hub_id(settings.model)

            def write_adapter(staging: Path) -> None:
                if pissa is not None:  # as plain LoRA of twice the rank, which loads on the original base model
                    pissa.save_as_lora(peft_model, staging)
                else:
                    peft_model.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
                (staging / "training.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")

            write_directory(adapter_dir, write_adapter)
            if pissa is not None:  # score and merge the saved adapter on the restored base model
                peft_model.unload()
                pissa.restore()
                pissa.close()
                peft_model = PeftModel.from_pretrained(model, adapter_dir)
            # The checkpoints' optimizer state (twice the adapter's size) is no longer needed.
            shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
            report(Stage(f"adapter saved in {adapter_dir}"))

        # Score learning and forgetting against the base model.
        scores = _final_scores(peft_model, scorer, epoch_scorer)

        # A merged model on request (after scoring: merging changes the base weights in place).
        if options.merge and not is_complete(out_dir / MERGED):
            report(Stage("merging the adapter into the base model"))
            merged = peft_model.merge_and_unload()

            def write_merged(staging: Path) -> None:
                merged.save_pretrained(staging)
                tokenizer.save_pretrained(staging)

            write_directory(out_dir / MERGED, write_merged)

        result = run_report(settings, options.scoring, out_dir, history, scores, runtime.describe())
        report(TrainFinished(result))
        return result


def _train(
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

    from tuner.training.compilation import layer_compiler
    from tuner.training.fused_elementwise import fused_elementwise
    from tuner.training.loss import training_loss

    class PackedTrainer(Trainer):
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            # One batch per optimizer step (no gradient accumulation), so the mean per label token is the loss.
            loss = training_loss(model, inputs)
            return (loss, {"loss": loss}) if return_outputs else loss

    recipe, seed = settings.recipe, settings.data.seed
    arguments = TrainingArguments(
        output_dir=str(out_dir / CHECKPOINTS),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
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
    )
    with layer_compiler(model, runtime.device.type) as compiler, fused_elementwise(model):
        trainer = PackedTrainer(
            model=model,
            args=arguments,
            train_dataset=packed_dataset(data.train),
            eval_dataset={"target": packed_dataset(data.heldout), "general": packed_dataset(data.general)},
            callbacks=[
                *_callbacks(report, recipe.batch_size * recipe.seq_len, epoch_scorer),
                compiling(compiler, report),
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


def _full_run(
    model: PreTrainedModel,
    settings: RunSettings,
    out_dir: Path,
    data: StudyData | None,
    tokenizer: PreTrainedTokenizerBase,
    options: RunOptions,
    scorer: Any,
    epoch_scorer: EpochScorer | None,
    report: TrainReporter,
    callbacks: Sequence[TrainerCallback],
    runtime: Runtime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full fine-tuning: the base scored first (training rewrites its weights in place), every weight trained with
    the LoRA run's data, schedule and clipping, the whole model saved in MODEL_DIR; then the trained model scored."""
    import torch

    from tuner.models.load import load_model, resolve_model, write_directory
    from tuner.training.trial import full_optimizer

    # Float32 weights on every device (AdamW's small steps vanish in bf16); on a GPU, Trainer's bf16 autocast.
    full_dtype = torch.float32

    model_dir = out_dir / FULL_MODEL
    base = scorer(model, "base") if scorer is not None else None
    recipe = settings.recipe
    if data is None:
        report(Stage(f"already trained: loading the model from {model_dir}"))
        del model
        model = load_model(resolve_model(str(model_dir)), runtime.device, full_dtype)
        history: dict[str, Any] = json.loads((model_dir / "training.json").read_text(encoding="utf-8"))
    else:
        model = model.to(full_dtype)
        model.requires_grad_(True)
        torch.manual_seed(settings.data.seed)
        optimizer = full_optimizer(model, recipe.learning_rate)
        started = time.perf_counter()
        trainer, resume = _train(
            model, optimizer, settings, out_dir, data, options, runtime, report, callbacks, epoch_scorer
        )
        history = _history(trainer, data, time.perf_counter() - started, resume)

        def write_model(staging: Path) -> None:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / "training.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")

        write_directory(model_dir, write_model)
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)  # each holds the weights and twice them in Adam
        report(Stage(f"model saved in {model_dir}"))
        model.requires_grad_(False)
    scores: dict[str, Any] = {}
    if scorer is not None and base is not None:
        model.eval()
        trained = scorer(model, "trained")
        scores = {
            "base": {n: s.as_dict() for n, s in base.items()},
            "trained": {n: s.as_dict() for n, s in trained.items()},
        }
        if epoch_scorer is not None:
            scores["epochs"] = epoch_scorer.stored()
    return history, scores


def _history(trainer: Any, data: StudyData, seconds: float, resumed: Path | None) -> dict[str, Any]:
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


def _scorer(
    settings: RunSettings,
    options: RunOptions,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: Path | None,
    runtime: Runtime,
    identity: str,
    report: TrainReporter,
) -> Any:
    """A function scoring a model (base with adapters disabled, or the adapter) and reporting it; None: no scoring."""
    from tuner.scoring.cache import ScoreCache
    from tuner.scoring.evaluation import score_model

    if options.scoring is None:
        return None
    learning = LEARNING_TASK.get(settings.task)

    def score(model: PreTrainedModel, label: str) -> dict[str, TaskScore]:
        def notify(message: str) -> None:
            report(Stage(f"{label}: {message}"))

        cached = {"identity": identity, "cache": ScoreCache()} if label == "base" else {}
        scores = score_model(model, tokenizer, options.scoring, data_dir, runtime, notify=notify, **cached)
        figures = {name: s.score for name, s in scores.items()}
        report(RunScored(label, figures, forgetting_score(figures), figures.get(learning) if learning else None))
        return scores

    return score


def _final_scores(peft_model: PeftModel, scorer: Any, epoch_scorer: EpochScorer | None) -> dict[str, Any]:
    if scorer is None:
        return {}
    with peft_model.disable_adapter():
        base = scorer(peft_model, "base")
    trained = scorer(peft_model, "trained")
    figures: dict[str, Any] = {
        "base": {n: s.as_dict() for n, s in base.items()},
        "trained": {n: s.as_dict() for n, s in trained.items()},
    }
    if epoch_scorer is not None:
        figures["epochs"] = epoch_scorer.stored()
    return figures
