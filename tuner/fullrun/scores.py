"""Scoring a full run: the base model and the adapter on learning and forgetting, and after each epoch on request
(the figures kept in the run directory, so they survive a resume)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.events import RunScored, Stage, TrainReporter
from tuner.scoring.benchmarks import LEARNING_TASK, forgetting_score
from tuner.settings import RunSettings

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuner.fullrun.train import RunOptions
    from tuner.scoring.evaluation import TaskScore
    from tuner.training.runtime import Runtime

EPOCH_SCORES = "epoch_scores.json"


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


def run_scorer(
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


def final_scores(peft_model: PeftModel, scorer: Any, epoch_scorer: EpochScorer | None) -> dict[str, Any]:
    """The base model's and the adapter's scores (and each epoch's) as the report holds them; none without a scorer."""
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
