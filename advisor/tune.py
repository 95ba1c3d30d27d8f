"""`advisor tune`: the headless study."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def tune(
    *,
    task: str,
    model: str,
    trials: int,
    trial_tokens: int,
    goal: float,
    out: Path,
    data_dir: str | None = None,
    storage: str | None = None,
    json_output: bool = False,
    batch_size: int = 4,
    seq_len: int = 512,
    seed: int = 0,
    data: str | None = None,
    prompt_column: str = "prompt",
    response_column: str = "response",
    allow_code_execution: bool = False,
    score_items: int | None = None,
) -> int:
    """Find a LoRA configuration for your task with real short training runs searched by Optuna.

    The paper's settings run first, then TPE searches learning rate, rank, alpha and target modules;
    pruned trials stop early. Trials that survive are scored on learning (GSM8K, or HumanEval with
    --allow-code-execution) and forgetting (HellaSwag, WinoGrande, ARC-Challenge) on subsets that keep
    scoring within 20 % of a trial's time; the Pareto front and a plot end the study. Running the same
    command again resumes the study in --out.
    """
    from rich.console import Console

    from advisor.progress import RichReporter
    from tuner.data import resolve_data_dir
    from tuner.errors import AdvisorError
    from tuner.settings import StudySettings, TrainBudget
    from tuner.study import run_study

    try:
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
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    mirror = resolve_data_dir(data_dir)
    stderr = Console(stderr=True)
    reporter = RichReporter(stderr, stderr if json_output else Console())
    try:
        recommendation = run_study(
            settings,
            out,
            data_dir=mirror,
            storage=storage,
            report=reporter,
            allow_code_execution=allow_code_execution,
            score_items=score_items,
        )
    finally:
        reporter.close()
    if json_output:
        sys.stdout.write(json.dumps(recommendation, indent=2, default=str) + "\n")
    return 0
