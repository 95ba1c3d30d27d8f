"""The recommended full run: LoRA instruction tuning for whole epochs with transformers' Trainer, resumable.

Reads top to bottom like a training recipe: set up data, model and adapters; train with checkpoints every
N steps and at each epoch (a killed run resumes from the last complete one); save the adapter (and a
merged model on request); score learning and forgetting against the base model; write the report.
Trainer and its callbacks are in fullrun.trainer, resuming in fullrun.checkpoints, the scoring in fullrun.scores.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.events import DataFound, Stage, TrainFinished, TrainReporter, ignore
from tuner.fullrun.checkpoints import CHECKPOINTS, check_identity
from tuner.fullrun.report import ADAPTER, FULL_MODEL, MERGED, run_report
from tuner.fullrun.scores import EpochScorer, final_scores, run_scorer
from tuner.fullrun.trainer import run_trainer, training_history
from tuner.models.load import is_complete
from tuner.records import RunReport
from tuner.scoring.benchmarks import EvalSettings
from tuner.settings import RunSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

    from tuner.data.prepare import StudyData
    from tuner.training.runtime import Runtime

PISSA_SCRATCH = "pissa"
"""PiSSA's initial adapter while the run trains (written at each start, removed once the adapter is saved)."""


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
    """Also save the base model with the adapter merged into it (QLoRA's: into the 16-bit base model)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass: less memory, slower steps."""

    def __post_init__(self) -> None:
        if self.save_steps < 1:
            raise ValueError(f"save_steps must be at least 1, got {self.save_steps}")


def steps_per_epoch(train_rows: int, batch_size: int) -> int:
    """Optimizer steps in one pass over the rows (the last, partial batch counts as a step)."""
    return -(-train_rows // batch_size)


def train_run(
    settings: RunSettings,
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    options: RunOptions | None = None,
    report: TrainReporter = ignore,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunReport | None:
    """Train the adapter for its epochs (resuming from the last checkpoint in `out_dir`), score it, write the report.

    `callbacks` are extra transformers TrainerCallbacks (tests use one to kill the run mid-epoch). Under the
    launcher (tuner.fullrun.distributed), every rank trains its part of each step; rank 0 alone holds `out_dir`,
    writes, reports and scores, and the other ranks return None once trained.
    """
    import contextlib

    import torch
    from peft import PeftModel, get_peft_model

    from tuner.data.prepare import prepare_study_data
    from tuner.data.preview import summary_line
    from tuner.fullrun.distributed import ranks
    from tuner.models.load import hub_id, load_model, load_tokenizer, loaded_identity, resolve_model, write_directory
    from tuner.rundir import run_dir_lock
    from tuner.training.fused_lora import fuse_lora_forwards
    from tuner.training.pissa import PissaBase
    from tuner.training.runtime import pick_runtime, quiet_libraries
    from tuner.training.trial import adapter_optimizer, peft_config

    options = options or RunOptions()
    place = ranks()
    report = report if place.main else ignore
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
        if data.counts is not None:
            report(DataFound(summary_line(data.counts, packing.seq_len)))
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(out_dir) if place.main else contextlib.nullcontext():
        if place.main:
            check_identity(out_dir, settings)
        runtime = pick_runtime()
        report(Stage(f"loading {source.describe()} on {runtime.describe()}"))
        model = load_model(source, runtime.device, runtime.dtype, settings.recipe.quantize)
        identity = loaded_identity(source, model)
        scorer = run_scorer(settings, options, tokenizer, data_dir, runtime, identity, report) if place.main else None
        epoch_scorer = EpochScorer(out_dir, scorer) if scorer is not None and options.score_each_epoch else None

        started = time.perf_counter()
        recipe, seed = settings.recipe, settings.data.seed
        if recipe.is_full:
            history, scores = _full_run(
                model, settings, out_dir, data, tokenizer, options, scorer, epoch_scorer, report, callbacks, runtime
            )
            if not place.main:
                return None
            result = run_report(settings, options.scoring, out_dir, history, scores, runtime.describe())
            report(TrainFinished(result))
            return result
        elif not place.main and data is None:
            return None
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
            trainer, resume = run_trainer(
                peft_model, optimizer, settings, out_dir, data, options, runtime, report, callbacks, epoch_scorer
            )
            history = training_history(trainer, data, time.perf_counter() - started, resume)
            if not place.main:  # rank 0 saves, scores and reports
                return None

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
        scores = final_scores(peft_model, scorer, epoch_scorer)

        # A merged model on request (after scoring: merging changes the base weights in place).
        if options.merge and not is_complete(out_dir / MERGED):
            report(Stage("merging the adapter into the base model"))
            if recipe.quantize is not None:  # into the 16-bit weights, not a lossy round trip through 4 bits
                del peft_model, model
                base = load_model(source, runtime.device, runtime.dtype)
                peft_model = PeftModel.from_pretrained(base, adapter_dir)
            merged = peft_model.merge_and_unload()

            def write_merged(staging: Path) -> None:
                merged.save_pretrained(staging)
                tokenizer.save_pretrained(staging)

            write_directory(out_dir / MERGED, write_merged)

        result = run_report(settings, options.scoring, out_dir, history, scores, runtime.describe())
        report(TrainFinished(result))
        return result


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

    from tuner.fullrun.distributed import ranks
    from tuner.models.load import load_model, resolve_model, write_directory
    from tuner.training.trial import full_optimizer

    # Float32 weights on every device (AdamW's small steps vanish in bf16); on a GPU, Trainer's bf16 autocast.
    full_dtype = torch.float32

    model_dir = out_dir / FULL_MODEL
    base = scorer(model, "base") if scorer is not None else None
    recipe = settings.recipe
    main = ranks().main
    if data is None:
        if not main:
            return {}, {}
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
        trainer, resume = run_trainer(
            model, optimizer, settings, out_dir, data, options, runtime, report, callbacks, epoch_scorer
        )
        history = training_history(trainer, data, time.perf_counter() - started, resume)
        if not main:  # rank 0 saves and scores
            return history, {}

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
