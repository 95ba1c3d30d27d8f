"""`advisor train`: the recommended full run, from a finished study, a preset, or settings given here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import AdvisorError
from tuner.fullrun.handover import Overrides
from tuner.paper import MIN_IFT_EPOCHS

if TYPE_CHECKING:
    from tuner.settings import RunSettings, StudySettings


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
    memory_budget: str | None = None,
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

    --method full trains every weight instead (the paper's reference): the same data, schedule and
    clipping, at the starting point's LoRA rate / 10 (LoRA's best rate is about 10x full fine-tuning's)
    or the paper's full fine-tuning rate; the whole model is saved in OUT/model (from_pretrained).
    """
    from rich.console import Console

    from advisor.presets import explicit_preset, load_preset, preset_from_run, preset_run_settings
    from advisor.progress import TrainRichReporter
    from tuner.data.prepare import resolve_data_dir
    from tuner.fullrun.handover import scoring_settings
    from tuner.fullrun.train import RunOptions, train_run
    from tuner.models.limits import check_fits_model
    from tuner.rundir import check_out_dir

    overrides = overrides or Overrides()
    if (from_run is not None) + (preset is not None) > 1:
        raise AdvisorError("give one of --from RUN_DIR and --preset NAME, not both")
    study: StudySettings | None = None
    if from_run is not None:
        chosen, finished = preset_from_run(from_run)
        study = finished.settings
        out = out or from_run / "train"
    elif preset is not None:
        chosen = load_preset(preset)
        out = out or Path("runs") / f"train-{chosen.name}"
    else:
        chosen = explicit_preset(overrides)
        out = out or Path("runs") / f"train-{overrides.task}"
    check_out_dir(out, "train")
    settings = preset_run_settings(chosen, overrides, study)
    if memory_budget is not None:
        _check_memory(settings, memory_budget)
    mirror = resolve_data_dir(data_dir)
    try:
        scoring = None
        if score:
            scoring = scoring_settings(settings, eval_tasks, eval_limit, prompt_format, allow_code_execution)
        options = RunOptions(save_steps=save_steps, scoring=scoring, score_each_epoch=score_each_epoch, merge=merge)
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    recipe = settings.recipe
    check_fits_model(settings.model, seq_len=recipe.seq_len, rank=None if recipe.is_full else recipe.lora.rank)
    stderr = Console(stderr=True)
    if settings.recipe.epochs < MIN_IFT_EPOCHS:
        epochs = settings.recipe.epochs
        sys.stderr.write(
            f"note: {epochs} epoch(s); Biderman et al. 2024 train LoRA IFT for at least {MIN_IFT_EPOCHS}\n"
        )
    if score and settings.task == "code" and not allow_code_execution and eval_tasks is None:
        sys.stderr.write("note: HumanEval left out: it runs the model's code; pass --allow-code-execution\n")
    reporter = TrainRichReporter(stderr, stderr if json_output else Console())
    try:
        result = train_run(settings, out, data_dir=mirror, options=options, report=reporter)
    finally:
        reporter.close()
    if json_output:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return 0


def _check_memory(settings: RunSettings, memory_budget: str) -> None:
    """AdvisorError when the run's estimated step exceeds the budget, before anything is written."""
    from tuner.memory.bounds import run_memory_refusal
    from tuner.memory.estimate import parse_size
    from tuner.training.runtime import pick_runtime

    try:
        budget = parse_size(memory_budget)
    except ValueError as error:
        raise AdvisorError(f"--memory-budget: {error}") from None
    refusal = run_memory_refusal(settings, budget, pick_runtime().device.type)
    if refusal is not None:
        raise AdvisorError(refusal)
