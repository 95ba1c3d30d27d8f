"""`advisor train`: the recommended full run, from a finished study, a preset, or settings given here."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    from advisor.presets import Preset
    from tuner.benchmarks import EvalSettings
    from tuner.settings import RunSettings


@dataclass(frozen=True)
class Overrides:
    """Settings given on the command line; None keeps the study's or preset's value."""

    model: str | None = None
    task: str | None = None
    rank: int | None = None
    alpha: float | None = None
    targets: str | None = None
    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    seed: int | None = None
    train_examples: int | None = None
    data: str | None = None
    prompt_column: str | None = None
    response_column: str | None = None


def study_preset(run_dir: Path) -> tuple[Preset, dict[str, Any]]:
    """The preset a finished study recommends, and the study's settings; AdvisorError for anything missing."""
    from advisor.export_command import read_study

    preset, _, settings = read_study(run_dir)
    return preset, settings


def explicit_preset(overrides: Overrides) -> Preset:
    """A preset from settings given on the command line: the paper's defaults for what is not given."""
    from advisor.presets import Preset
    from tuner.paper import paper_learning_rate
    from tuner.settings import LoraSettings

    if overrides.task is None:
        raise AdvisorError("say what to train: --from RUN_DIR, --preset NAME, or --task code|math|custom")
    rank = overrides.rank or 16
    try:
        lora = LoraSettings(rank=rank, alpha=overrides.alpha or 2.0 * rank, targets=overrides.targets or "all")
        rate = overrides.learning_rate or paper_learning_rate(overrides.task, rank)
        return Preset(
            name="command-line", task=overrides.task, lora=lora, learning_rate=rate, notes="Given on the command line."
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None


def run_settings(preset: Preset, overrides: Overrides, study: dict[str, Any] | None = None) -> RunSettings:
    """The full run's settings: the preset (and the study's data settings), then what the command line changes."""
    from tuner.models import DEFAULT_MODEL
    from tuner.settings import RunSettings

    study = study or {}
    lora = preset.lora
    try:
        if overrides.rank is not None or overrides.alpha is not None or overrides.targets is not None:
            rank = overrides.rank or lora.rank
            alpha = overrides.alpha or (lora.alpha / lora.rank * rank)
            lora = replace(lora, rank=rank, alpha=alpha, targets=overrides.targets or lora.targets)
        return RunSettings(
            task=overrides.task or preset.task,
            model=overrides.model or study.get("model") or preset.model or DEFAULT_MODEL,
            lora=lora,
            learning_rate=overrides.learning_rate or preset.learning_rate,
            epochs=overrides.epochs or preset.epochs,
            batch_size=overrides.batch_size or preset.batch_size,
            seq_len=overrides.seq_len or preset.seq_len,
            warmup_ratio=preset.warmup_ratio,
            seed=overrides.seed if overrides.seed is not None else int(study.get("seed", 0)),
            train_examples=overrides.train_examples,
            data=overrides.data or study.get("data"),
            prompt_column=overrides.prompt_column or study.get("prompt_column", "prompt"),
            response_column=overrides.response_column or study.get("response_column", "response"),
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None


def scoring_settings(
    settings: RunSettings,
    eval_tasks: str | None = None,
    limit: int | None = None,
    prompt_format: str = "chat",
    allow_code_execution: bool = False,
) -> EvalSettings:
    """What the full run is scored on: the benchmarks named, else the forgetting three and the task's own."""
    from advisor.evaluate import chosen_tasks
    from tuner.benchmarks import LEARNING_TASK, EvalSettings

    tasks = chosen_tasks(eval_tasks, allow_code_execution)
    if eval_tasks is None:
        learning = LEARNING_TASK.get(settings.task)
        tasks = tuple(t for t in tasks if t not in LEARNING_TASK.values() or t == learning)
    return EvalSettings(
        tasks=tasks,
        limit=limit,
        seed=settings.seed,
        prompt_format=prompt_format,
        allow_code_execution=allow_code_execution,
    )


def train(
    *,
    from_run: Path | None = None,
    preset: str | None = None,
    overrides: Overrides | None = None,
    out: Path | None = None,
    data_dir: str | None = None,
    save_steps: int = 200,
    merge: bool = False,
    score: bool = True,
    eval_tasks: str | None = None,
    eval_limit: int | None = None,
    score_each_epoch: bool = False,
    prompt_format: str = "chat",
    allow_code_execution: bool = False,
    json_output: bool = False,
) -> int:
    """Train the recommended configuration for real: LoRA instruction tuning for whole epochs (4 by default,
    the paper's minimum), checkpointed every --save-steps steps and at each epoch's end.

    Start from a finished study (--from RUN_DIR, trained into RUN_DIR/train), a preset (--preset NAME or
    file), or settings given here (--task ...). Options such as --epochs or --learning-rate change the
    starting point. If the run is killed, the same command resumes from the last checkpoint. The adapter
    is saved in PEFT format (and merged into the base model with --merge), then scored for learning and
    forgetting against the base model; report.md, report.json and learning_vs_forgetting.png are written
    beside it.
    """
    from rich.console import Console

    from advisor.presets import load_preset
    from advisor.progress import TrainRichReporter
    from tuner.data import resolve_data_dir
    from tuner.train import RunOptions, train_run

    overrides = overrides or Overrides()
    if (from_run is not None) + (preset is not None) > 1:
        raise AdvisorError("give one of --from RUN_DIR and --preset NAME, not both")
    study: dict[str, Any] | None = None
    if from_run is not None:
        chosen, study = study_preset(from_run)
        out = out or from_run / "train"
    elif preset is not None:
        chosen = load_preset(preset)
        out = out or Path("runs") / f"train-{chosen.name}"
    else:
        chosen = explicit_preset(overrides)
        out = out or Path("runs") / f"train-{overrides.task}"
    settings = run_settings(chosen, overrides, study)
    mirror = resolve_data_dir(data_dir)
    try:
        scoring = None
        if score:
            scoring = scoring_settings(settings, eval_tasks, eval_limit, prompt_format, allow_code_execution)
        options = RunOptions(save_steps=save_steps, scoring=scoring, score_each_epoch=score_each_epoch, merge=merge)
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    stderr = Console(stderr=True)
    if settings.epochs < 4:
        sys.stderr.write(f"note: {settings.epochs} epoch(s); Biderman et al. 2024 train LoRA IFT for at least 4\n")
    if score and settings.task == "code" and not allow_code_execution and eval_tasks is None:
        sys.stderr.write("note: HumanEval left out: it runs the model's code; pass --allow-code-execution\n")
    reporter = TrainRichReporter(stderr, stderr if json_output else Console())
    try:
        result = train_run(settings, out, data_dir=mirror, options=options, report=reporter)
    finally:
        reporter.close()
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    return 0
