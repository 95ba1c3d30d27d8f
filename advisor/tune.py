"""`advisor tune`: the headless study."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    from advisor.presets import Preset
    from tuner.settings import StudySettings
    from tuner.space import SearchSpace
    from tuner.study import Feasibility


def tune(
    *,
    task: str | None,
    model: str | None,
    trials: int,
    trial_tokens: int,
    goal: float,
    out: Path | None,
    data_dir: str | None = None,
    storage: str | None = None,
    json_output: bool = False,
    batch_size: int | None = None,
    seq_len: int | None = None,
    seed: int = 0,
    data: str | None = None,
    prompt_column: str = "prompt",
    response_column: str = "response",
    allow_code_execution: bool = False,
    score_items: int | None = None,
    memory_budget: str | None = None,
    from_preset: str | None = None,
) -> int:
    """Find a LoRA configuration for your task with real short training runs searched by Optuna.

    The paper's settings run first, then TPE searches learning rate, rank, alpha and target modules;
    pruned trials stop early. Trials that survive are scored on learning (GSM8K, or HumanEval with
    --allow-code-execution) and forgetting (HellaSwag, WinoGrande, ARC-Challenge) on subsets that keep
    scoring within 20 % of a trial's time; the Pareto front and a plot end the study. Running the same
    command again resumes the study in --out. With --from-preset, the preset's task, model, batch, row
    length and memory budget are the defaults, and its configuration is the first trial.
    """
    from rich.console import Console

    from advisor.memory import parse_size
    from advisor.presets import load_preset
    from advisor.progress import RichReporter
    from tuner.data import resolve_data_dir
    from tuner.models import DEFAULT_MODEL
    from tuner.settings import StudySettings, TrainBudget

    preset = load_preset(from_preset) if from_preset is not None else None
    task = task or (preset.task if preset else "code")
    model = model or (preset.model if preset else None) or DEFAULT_MODEL
    batch_size = batch_size or (preset.batch_size if preset else 4)
    seq_len = seq_len or (preset.seq_len if preset else 512)
    memory_budget = memory_budget or (preset.memory_budget if preset else None)
    out = out or Path("runs") / task
    first = [preset_params(preset)] if preset is not None else []
    try:
        budget_bytes = parse_size(memory_budget) if memory_budget is not None else None
        budget = TrainBudget(train_tokens=trial_tokens, batch_size=batch_size, seq_len=seq_len)
        settings = StudySettings(
            task=task,
            model=model,
            trials=trials,
            budget=budget,
            goal=goal,
            seed=seed,
            data=data,
            prompt_column=prompt_column,
            response_column=response_column,
            memory_budget=budget_bytes,
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    mirror = resolve_data_dir(data_dir)
    stderr = Console(stderr=True)
    reporter = RichReporter(stderr, stderr if json_output else Console())
    try:
        recommendation = run_budgeted_study(
            settings,
            out,
            data_dir=mirror,
            storage=storage,
            report=reporter,
            allow_code_execution=allow_code_execution,
            score_items=score_items,
            first_configurations=first,
        )
    finally:
        reporter.close()
    if json_output:
        sys.stdout.write(json.dumps(recommendation, indent=2, default=str) + "\n")
    return 0


def preset_params(preset: Preset) -> dict[str, object]:
    """A preset's configuration as a trial's parameters."""
    return {
        "learning_rate": preset.learning_rate,
        "rank": preset.lora.rank,
        "alpha_multiple": preset.lora.alpha / preset.lora.rank,
        "targets": preset.lora.targets,
    }


def run_budgeted_study(settings: StudySettings, run_dir: Path, **options: Any) -> dict[str, Any]:
    """Run (or resume) a study in the search space its memory budget allows; `options` go to run_study.

    The space also holds any configuration the study starts from (`first_configurations`).
    """
    from tuner.space import SearchSpace
    from tuner.study import run_study

    space, feasible = memory_bounds(settings)
    for params in options.get("first_configurations") or []:
        space = (space or SearchSpace()).including(params)
    return run_study(settings, run_dir, space=space, feasible=feasible, **options)


def memory_bounds(settings: StudySettings) -> tuple[SearchSpace | None, Feasibility | None]:
    """The search space narrowed to what the memory estimate says fits the budget, and the check each trial passes.

    Ranks that fit with some target set and target sets that fit at the smallest rank stay; a drawn pair that
    still does not fit is pruned before it runs. Nothing fitting is an error that says what would.
    """
    from dataclasses import replace

    from advisor.memory import TrainSetup, estimate, format_size
    from advisor.memory_command import feasible_text, memory_report, model_shape, weights_refusal
    from tuner.settings import LoraSettings
    from tuner.space import SearchSpace
    from tuner.trial import pick_runtime

    if settings.memory_budget is None:
        return None, None
    device = pick_runtime().device.type  # where the trials will run
    shape = model_shape(settings.model)
    trial_setup = TrainSetup(device=device, batch=settings.budget.batch_size, seq_len=settings.budget.seq_len)
    limit = settings.memory_budget

    def feasible(lora: LoraSettings) -> str | None:
        total = estimate(shape, replace(trial_setup, rank=lora.rank, targets=lora.targets)).total
        if total <= limit:
            return None
        return f"estimated {format_size(total)} for r={lora.rank} on {lora.targets}, over {format_size(limit)}"

    space = SearchSpace()
    fitting = [(r, t) for r in space.ranks for t in space.targets if feasible(LoraSettings(r, 2 * r, t)) is None]
    if not fitting:
        refusal = weights_refusal(shape, trial_setup, limit)
        if refusal:
            raise AdvisorError(refusal)
        smallest = replace(trial_setup, rank=min(space.ranks), targets="attention")
        advice = feasible_text(memory_report(settings.model, shape, smallest, limit)).replace("\n", ";")
        raise AdvisorError(f"no LoRA configuration fits {format_size(limit)} at these trial settings. {advice}")
    ranks = tuple(sorted({r for r, _ in fitting}))
    targets = tuple(t for t in space.targets if t in {target for _, target in fitting})
    return replace(space, ranks=ranks, targets=targets), feasible
