"""From a finished study (or a preset, or the command line) to the full run's settings (pure).

A study's run directory holds recommendation.json (a Recommendation) and settings.json (its StudySettings);
the full run trains the recommended recipe on the study's data, with whatever the person changes on top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuner.errors import AdvisorError
from tuner.paper import FULL_FT_LEARNING_RATE, paper_learning_rate
from tuner.records import Recommendation
from tuner.scoring.benchmarks import BENCHMARKS, LEARNING_TASK, EvalSettings, parse_tasks
from tuner.settings import (
    DataSettings,
    LoraSettings,
    RunSettings,
    StudySettings,
    TrainingRecipe,
)
from tuner.study.budget import format_duration
from tuner.study.priors import LORA_RATE_MULTIPLE


@dataclass(frozen=True)
class FinishedStudy:
    """What a full run takes from a study: its recommendation and its settings."""

    recommendation: Recommendation
    settings: StudySettings
    run_dir: Path

    def recipe(self) -> TrainingRecipe:
        """The recommended adapter and rate, trained at the study's batch, row length and warm-up."""
        rec, budget = self.recommendation, self.settings.budget
        return TrainingRecipe(
            lora=LoraSettings(rank=int(rec.rank), alpha=float(rec.alpha), targets=rec.targets, variant=rec.variant),
            learning_rate=float(rec.learning_rate),
            epochs=int(rec.epochs),
            batch_size=budget.batch_size,
            seq_len=budget.seq_len,
            warmup_ratio=budget.warmup_ratio,
            quantize=rec.quantize,
        )

    def origin(self) -> str:
        """How an export names where it came from: the trial, in the run directory as given."""
        return study_origin(self.recommendation.trial, self.run_dir)


def study_origin(trial: object, run_dir: object) -> str:
    """'trial N of the study in DIR', or the study when no trial completed."""
    return f"trial {trial} of the study in {run_dir}" if trial is not None else f"the study in {run_dir}"


def read_study(run_dir: Path) -> FinishedStudy:
    """A finished study's recommendation and settings; AdvisorError for anything missing or unreadable."""
    if not run_dir.is_dir():
        raise AdvisorError(f"no run directory {run_dir}")
    recommendation = _read_json(
        run_dir / "recommendation.json", f"{run_dir} has no recommendation.json: has its study finished?"
    )
    settings = _read_json(run_dir / "settings.json", f"{run_dir} has no settings.json: not a study's run directory")
    try:
        return FinishedStudy(Recommendation.from_json(recommendation), StudySettings.from_json(settings), run_dir)
    except KeyError as missing:
        raise AdvisorError(f"{run_dir}: no {missing.args[0]!r} in its recommendation.json or settings.json") from None
    except (TypeError, ValueError) as error:
        raise AdvisorError(f"{run_dir}/recommendation.json: {error}") from None


def _read_json(path: Path, missing: str) -> dict[str, Any]:
    if not path.is_file():
        raise AdvisorError(missing)
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdvisorError(f"cannot read {path}: {error}") from None
    if not isinstance(fields, dict):
        raise AdvisorError(f"{path} does not hold a JSON object")
    return fields


@dataclass(frozen=True)
class Overrides:
    """Settings given on the command line or in the app; None keeps the study's or preset's value."""

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
    format: str | None = None
    regime: str | None = None
    method: str | None = None
    """'lora' or 'full' (full fine-tuning, the paper's reference); None keeps the starting point's (LoRA)."""
    quantize: str | None = None
    """'nf4' (QLoRA: the adapter on 4-bit weights) or 'none' (16-bit); None keeps the starting point's."""

    def explicit_recipe(self) -> TrainingRecipe:
        """A recipe from these settings alone: the paper's defaults (all linear layers, r 16, alpha 2r, its rate)."""
        if self.task is None:
            raise AdvisorError("say what to train: --from RUN_DIR, --preset NAME, or --task code|math|custom")
        rank = self.rank or 16
        try:
            lora = LoraSettings(rank=rank, alpha=self.alpha or 2.0 * rank, targets=self.targets or "all")
            if self.method == "full":  # the authors' full fine-tuning rate (custom data: code's)
                rate = self.learning_rate or FULL_FT_LEARNING_RATE.get(self.task, FULL_FT_LEARNING_RATE["code"])
                return TrainingRecipe(lora=lora, learning_rate=rate, method="full")
            rate = self.learning_rate or paper_learning_rate(self.task, rank)
            return TrainingRecipe(lora=lora, learning_rate=rate, quantize=_quantize(self.quantize, None))
        except ValueError as error:
            raise AdvisorError(str(error)) from None


def run_settings(
    recipe: TrainingRecipe,
    task: str,
    model: str,
    overrides: Overrides,
    study: StudySettings | None = None,
) -> RunSettings:
    """The full run's settings: the recipe on the study's data (if any), then what the overrides change."""
    study_data = study.data if study is not None else None
    lora = recipe.lora
    method = overrides.method or recipe.method
    rate = recipe.learning_rate
    if method == "full" and not recipe.is_full:  # LoRA's best rate is about 10x full fine-tuning's, read backwards
        rate = recipe.learning_rate / LORA_RATE_MULTIPLE
    try:
        if method == "full" and (overrides.rank or overrides.alpha or overrides.targets or lora.variant != "lora"):
            given = [f"--{n}" for n in ("rank", "alpha", "targets") if getattr(overrides, n) is not None]
            if given:
                raise AdvisorError(f"{', '.join(given)} set a LoRA adapter; full fine-tuning trains every weight")
            lora = replace(lora, variant="lora")  # a variant's recipe, trained in full: no adapter to vary
        if overrides.rank is not None or overrides.alpha is not None or overrides.targets is not None:
            rank = overrides.rank or lora.rank
            alpha = overrides.alpha or (lora.alpha / lora.rank * rank)
            lora = replace(lora, rank=rank, alpha=alpha, targets=overrides.targets or lora.targets)
        changed = TrainingRecipe(
            lora=lora,
            learning_rate=overrides.learning_rate or rate,
            epochs=overrides.epochs or recipe.epochs,
            batch_size=overrides.batch_size or recipe.batch_size,
            seq_len=overrides.seq_len or recipe.seq_len,
            warmup_ratio=recipe.warmup_ratio,
            max_grad_norm=recipe.max_grad_norm,
            method=method,
            # A study's QLoRA pick trained in full is 16-bit (full fine-tuning has no frozen weights to quantise).
            quantize=_quantize(overrides.quantize, None if method == "full" else recipe.quantize),
        )
        data = DataSettings(
            task=overrides.task or task,
            source=overrides.data or (study_data.source if study_data else None),
            prompt_column=overrides.prompt_column or (study_data.prompt_column if study_data else "prompt"),
            response_column=overrides.response_column or (study_data.response_column if study_data else "response"),
            seed=overrides.seed if overrides.seed is not None else (study_data.seed if study_data else 0),
            format=overrides.format or (study_data.format if study_data else "auto"),
            regime=overrides.regime or (study_data.regime if study_data else None),
        )
        return RunSettings(
            model=overrides.model or model, data=data, recipe=changed, train_examples=overrides.train_examples
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None


def _quantize(given: str | None, kept: str | None) -> str | None:
    """The recipe's quantize from an override ('none': 16-bit) or the starting point's."""
    if given is None:
        return kept
    return None if given == "none" else given


def chosen_tasks(tasks: str | None, allow_code_execution: bool) -> tuple[str, ...]:
    """The benchmarks to score: those named, else all five (HumanEval only with permission to run code)."""
    if tasks is not None:
        try:
            return parse_tasks(tasks)
        except ValueError as error:
            raise AdvisorError(str(error)) from None
    return tuple(name for name in BENCHMARKS if allow_code_execution or not BENCHMARKS[name].runs_code)


def scoring_settings(
    settings: RunSettings,
    eval_tasks: str | None = None,
    limit: int | None = None,
    prompt_format: str = "chat",
    allow_code_execution: bool = False,
) -> EvalSettings:
    """What the full run is scored on: the benchmarks named, else the forgetting three and the task's own."""
    tasks = chosen_tasks(eval_tasks, allow_code_execution)
    if eval_tasks is None:
        learning = LEARNING_TASK.get(settings.task)
        tasks = tuple(t for t in tasks if t not in LEARNING_TASK.values() or t == learning)
    return EvalSettings(
        tasks=tasks,
        limit=limit,
        seed=settings.data.seed,
        prompt_format=prompt_format,
        allow_code_execution=allow_code_execution,
    )


@dataclass(frozen=True)
class RunEstimate:
    """How long a full run should take on the machine the study ran on, from the study's measured speeds."""

    train_examples: int
    """Examples it trains on (all the study's, or fewer)."""
    tokens: int
    """Training tokens over every epoch."""
    train_seconds: float
    score_seconds: float | None
    """Scoring the adapter and the base model (None when the study never priced its benchmarks)."""

    def describe(self) -> str:
        """'About 8.3 h: 5,929,600 training tokens over 7,412 examples (7.9 h at the study's speed), then about
        25 min of scoring'."""
        total = self.train_seconds + (self.score_seconds or 0.0)
        text = (
            f"About {format_duration(total)}: {self.tokens:,} training tokens over {self.train_examples:,} "
            f"example{'s' * (self.train_examples != 1)}"
            f" ({format_duration(self.train_seconds)} at the study's speed)"
        )
        if self.score_seconds is not None:
            text += f", then about {format_duration(self.score_seconds)} of scoring"
        return text


def run_estimate(
    recommendation: Recommendation, epochs: int, train_examples: int | None, limit: int | None, tasks: tuple[str, ...]
) -> RunEstimate | None:
    """The full run's duration from the study's data size and speeds; None where the study recorded neither."""
    from tuner.scoring.benchmarks import ADAPTER_OVERHEAD, item_count

    data = recommendation.data
    if data is None:
        return None
    speed, examples, tokens = data.tokens_per_second, data.train_examples, data.train_tokens
    if not speed or not examples or not tokens:
        return None
    used = min(train_examples or examples, examples)
    total_tokens = round(tokens * used / examples) * epochs
    plan = (recommendation.scores.plan if recommendation.scores else None) or {}
    per_item = plan.get("seconds_per_item") or {}
    score_seconds = None
    if all(name in per_item for name in tasks):
        each = sum(per_item[name] * item_count(BENCHMARKS[name], limit) for name in tasks)
        score_seconds = each * (1 + ADAPTER_OVERHEAD)
    return RunEstimate(used, total_tokens, total_tokens / speed, score_seconds)
