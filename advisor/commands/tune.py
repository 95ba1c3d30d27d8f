"""`advisor tune`: the headless study."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tuner.errors import AdvisorError
from tuner.paper import FIXED_ALPHA
from tuner.settings import DEFAULT_TRIALS, MAX_BUDGET_TRIALS


def tune(
    *,
    task: str | None,
    model: str | None,
    trials: int | None,
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
    study_budget: str | None = None,
    alpha: str | None = None,
    variants: str | None = None,
    range_test: bool = True,
    reference: str | None = None,
    workers: int = 1,
    study: str | None = None,
    worker_process: bool = False,
    argv: Sequence[str] = (),
) -> int:
    """Find a LoRA configuration for your task with real short training runs searched by Optuna.

    A learning-rate range test sets the searched rates; a single educated guess (the width rule's rate, all
    linear layers, r 16) and the same at r 256 run first, then TPE searches rate, rank and target modules
    (and LoRA variants with --variants) under successive halving: many short trials, the best trained on.
    --budget caps the whole study's training tokens or time. Trials that survive are scored on learning
    (GSM8K, or HumanEval with --allow-code-execution) and forgetting (HellaSwag, WinoGrande, ARC-Challenge)
    on subsets that keep scoring within 20 % of a trial's time; the Pareto front and a plot end the study.
    Running the same command again resumes the study in --out. With --from-preset, the preset's task, model, batch, row
    length and memory budget are the defaults, and its configuration is the first trial. With --reference full,
    full fine-tuning then trains on the same data and budget at rates around the pick's / 10 and the paper's,
    and the study reports the ratio of the best rates and the held-out loss gap (Biderman et al. 2024's reference);
    where the pick is scored, the best full run is scored on the same items, beside it on the plot.
    With --workers N, N processes run the trials at once (one per GPU); with --storage URL --study NAME, processes
    on other machines join the same study, and whichever finishes last writes the recommendation.
    """
    from rich.console import Console

    from advisor.presets import load_preset
    from advisor.progress import RichReporter
    from tuner.data.prepare import resolve_data_dir
    from tuner.memory.bounds import run_budgeted_study
    from tuner.memory.estimate import parse_size
    from tuner.models.limits import check_fits_model
    from tuner.models.load import DEFAULT_MODEL
    from tuner.rundir import check_out_dir
    from tuner.settings import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_SEQ_LEN,
        DEFAULT_TASK,
        DataSettings,
        StudySettings,
        TrainBudget,
    )
    from tuner.study.budget import StudyBudget
    from tuner.study.range_test import RangeTestPlan
    from tuner.study.space import SearchSpace, alpha_choice, trial_params

    preset = load_preset(from_preset) if from_preset is not None else None
    task = task or (preset.task if preset else DEFAULT_TASK)
    model = model or (preset.model if preset else None) or DEFAULT_MODEL
    if batch_size is None:  # not `or`: a 0 given here is refused by TrainBudget, never taken for the default
        batch_size = preset.recipe.batch_size if preset else DEFAULT_BATCH_SIZE
    if seq_len is None:
        seq_len = preset.recipe.seq_len if preset else DEFAULT_SEQ_LEN
    memory_budget = memory_budget or (preset.memory_budget if preset else None)
    out = out or Path("runs") / task
    check_out_dir(out, "study")
    first = [trial_params(preset.recipe.lora, preset.recipe.learning_rate)] if preset is not None else []
    try:
        spend = StudyBudget.parse(study_budget) if study_budget is not None else None
        chosen = tuple(v.strip() for v in (variants or "lora").split(",") if v.strip())  # SearchSpace checks them
        space = SearchSpace(variants=chosen, **alpha_choice(alpha or f"{FIXED_ALPHA:g}"))  # type: ignore[arg-type]
        if trials is None:
            trials = DEFAULT_TRIALS if spend is None else MAX_BUDGET_TRIALS
        budget_bytes = parse_size(memory_budget) if memory_budget is not None else None
        budget = TrainBudget(train_tokens=trial_tokens, batch_size=batch_size, seq_len=seq_len)
        data_settings = DataSettings(
            task=task, source=data, prompt_column=prompt_column, response_column=response_column, seed=seed
        )
        settings = StudySettings(
            model=model,
            data=data_settings,
            trials=trials,
            budget=budget,
            goal=goal,
            memory_budget=budget_bytes,
            search_budget=spend,
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    check_fits_model(model, seq_len=seq_len, rank=preset.recipe.lora.rank if preset else None)
    mirror = resolve_data_dir(data_dir)
    stderr = Console(stderr=True)
    reporter = RichReporter(stderr, stderr if json_output else Console())
    spawn = None
    if workers > 1:

        def spawn() -> None:
            from advisor.commands.workers import run_workers

            reporter.console.print(f"starting {workers} workers on this machine")
            codes = run_workers(argv, workers, lambda line: reporter.console.print(line, markup=False, highlight=False))
            for index, code in enumerate(codes, start=1):
                if code != 0:
                    reporter.console.print(f"worker {index} exited with code {code}: this process runs what it left")

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
            space=space,
            range_test=RangeTestPlan() if range_test else None,
            reference=reference,
            study=study,
            worker=worker_process,
            spawn=spawn,
        )
    finally:
        reporter.close()
    if json_output and recommendation is not None:
        sys.stdout.write(json.dumps(recommendation.to_json(), indent=2, default=str) + "\n")
    return 0
