"""Full fine-tuning as a study's reference arm (pure): the rates it tries and what it says beside LoRA's pick.

Biderman et al. 2024 measure LoRA against full fine-tuning; LoRA Without Regret finds LoRA's best rate about 10x
full fine-tuning's. A study run with `--reference full` trains every weight on the same data, budget and
schedule as its trials, at rates around the pick's rate / 10 (and the paper's full fine-tuning rate), and reports
the ratio of the two best rates and the gap in held-out losses, paired over the confirm rows where both were
measured there. Where the pick was scored on the benchmarks, the best full run is scored on the same items, and the
gaps in learning and general score are paired over those items (the paper's Figure: both on one plane).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuner.paper import FULL_FT_LEARNING_RATE
from tuner.records.reference import ConfirmGap, LossGap, ReferenceRun, ReferenceSummary, ScoreGap
from tuner.records.scores import ScoreChange
from tuner.scoring.benchmarks.roles import (
    forgetting_score,
    forgetting_stderr,
    paired_stderr,
    score_change,
    stored_stderr,
)
from tuner.study.confirm import mean_loss, paired_difference
from tuner.study.priors import LORA_RATE_MULTIPLE

REFERENCES = ("full",)
"""What a study can be compared with: full fine-tuning of every weight."""
SPREAD = 3.0
"""The reference's rates: the pick's rate / 10, and this factor either side of it."""
RUN_FIELDS = ("rate", "target_loss", "general_loss", "stopped")
"""What the summary keeps of each reference run (its curve and confirm rows stay in the study)."""
SAME_RATE = 1.5
"""The paper's rate is left out when it lies within this factor of a rate already tried."""


def reference_rates(lora_rate: float, task: str) -> tuple[float, ...]:
    """Full fine-tuning's rates for a study whose pick trained at `lora_rate`: LoRA's rate / 10 (the 10x rule read
    backwards), SPREAD x either side, and the authors' full fine-tuning rate for the task unless one is close."""
    centre = lora_rate / LORA_RATE_MULTIPLE
    rates = [float(f"{rate:.3g}") for rate in (centre / SPREAD, centre, centre * SPREAD)]
    paper = FULL_FT_LEARNING_RATE.get(task, FULL_FT_LEARNING_RATE["code"])
    if all(max(paper / rate, rate / paper) >= SAME_RATE for rate in rates):
        rates.append(paper)
    return tuple(sorted(rates))


def rate_key(rate: float) -> str:
    """How a rate names its run in the study's attributes (JSON keys are text)."""
    return f"{rate:.4g}"


def best_run(runs: dict[str, dict[str, Any]]) -> str | None:
    """The key of the best run: the lowest final target loss among the runs that finished (not diverged or
    stopped); None when none did."""
    finished = {key: run for key, run in runs.items() if run.get("target_loss") is not None and not run.get("stopped")}
    return min(finished, key=lambda key: finished[key]["target_loss"]) if finished else None


@dataclass(frozen=True)
class ReferenceScores:
    """Full fine-tuning's best run, LoRA's pick and the base model scored on the same benchmark items (each
    benchmark -> TaskScore as a dict: score, stderr, items, item_scores)."""

    rate: float
    """The full run's learning rate (its scores count only while it is the best run)."""
    items: int
    """Items per benchmark, the same for all three."""
    full: dict[str, dict[str, Any]]
    lora: dict[str, dict[str, Any]]
    base: dict[str, dict[str, Any]]
    learning_benchmark: str | None
    """GSM8K, HumanEval...; None where the task has none (or it was not scored)."""


def current_scores(
    runs: dict[str, dict[str, Any]], stored: dict[str, Any] | None, items: int | None
) -> dict[str, Any] | None:
    """Full fine-tuning's stored scoring ({rate, items, seconds, scores}, as the study keeps it) while it belongs to
    the best run and was taken on `items` items per benchmark (the pick's); None otherwise, e.g. after new rates
    found a better run."""
    best = best_run(runs)
    if stored is None or best is None or items is None or "scores" not in stored:
        return None
    if rate_key(float(stored["rate"])) != best or stored.get("items") != items:
        return None
    return stored


def reference_summary(
    runs: dict[str, dict[str, Any]],
    lora_rate: float,
    lora_losses: tuple[float | None, float | None],
    lora_confirm: dict[str, Sequence[Sequence[float]]] | None = None,
    scores: ReferenceScores | None = None,
) -> ReferenceSummary | None:
    """The reference beside the pick: each rate's final held-out losses, the best rate (lowest target loss among
    the runs that did not diverge), the ratio of LoRA's rate to it, and the gaps LoRA - full in target and general
    held-out loss (paired over the confirm rows with their standard errors where both were measured there) and,
    with `scores` of the best run, in learning and general score (score_gaps); None when no run finished."""
    best_key = best_run(runs)
    if best_key is None:
        return None
    best = runs[best_key]
    confirm = best.get("confirm")
    losses = {}
    for name, index, rows in (("target_loss", 0, "target"), ("general_loss", 1, "general")):
        lora = lora_losses[index]
        confirmed = None
        if lora_confirm and confirm:
            gap, error = paired_difference(lora_confirm[rows], confirm[rows])
            lora_mean, full_mean = mean_loss(lora_confirm[rows]), mean_loss(confirm[rows])
            confirmed = ConfirmGap(lora_mean, full_mean, gap, error, len(confirm[rows]))
        losses[name] = LossGap(lora, best[name], lora - best[name] if lora is not None else None, confirmed)
    summary = ReferenceSummary(
        runs={key: ReferenceRun(**{k: run.get(k) for k in RUN_FIELDS}) for key, run in runs.items()},
        best_rate=best["rate"],
        lora_rate=lora_rate,
        rate_ratio=lora_rate / best["rate"],
        target_loss=losses["target_loss"],
        general_loss=losses["general_loss"],
    )
    if scores is not None and rate_key(scores.rate) == best_key:
        general, learning = score_gaps(scores)
        summary = replace(summary, score_items=scores.items, general_score=general, learning_score=learning)
    return summary


def score_gaps(scores: ReferenceScores) -> tuple[ScoreGap | None, ScoreGap | None]:
    """Full fine-tuning's general and learning scores against the base model's, and LoRA's minus full's, on the
    same items. Each holds `full` (score_change: the score and its change against the base, with standard errors),
    `lora`, and the `gap` LoRA - full with its standard error, paired over the items where both kept theirs (else
    the two errors taken as independent); None where a model lacks the score."""
    models = {"full": scores.full, "lora": scores.lora, "base": scores.base}
    figures = {label: {name: float(score["score"]) for name, score in found.items()} for label, found in models.items()}
    errors = {label: {name: stored_stderr(score) for name, score in found.items()} for label, found in models.items()}
    full_paired = _paired(scores.full, scores.base)  # full - base, item by item
    gap_paired = _paired(scores.lora, scores.full)  # LoRA - full, item by item
    general_gap = learning_gap = None
    general = {label: forgetting_score(found) for label, found in figures.items()}
    full, lora, base = general["full"], general["lora"], general["base"]
    if full is not None and lora is not None and base is not None:
        general_errors = {label: forgetting_stderr(found) for label, found in errors.items()}
        full_change = score_change(
            full, base, general_errors["full"], general_errors["base"], forgetting_stderr(full_paired)
        )
        general_gap = _gap(
            ScoreChange.from_json(full_change),
            lora,
            general_errors["lora"],
            general_errors["full"],
            forgetting_stderr(gap_paired),
        )
    name = scores.learning_benchmark
    if name is not None and all(name in found for found in figures.values()):
        learned = {label: found[name] for label, found in figures.items()}
        full_change = score_change(
            learned["full"], learned["base"], errors["full"][name], errors["base"][name], full_paired.get(name)
        )
        learning_gap = replace(
            _gap(
                ScoreChange.from_json(full_change),
                learned["lora"],
                errors["lora"][name],
                errors["full"][name],
                gap_paired.get(name),
            ),
            benchmark=name,
        )
    return general_gap, learning_gap


def _paired(first: dict[str, dict[str, Any]], second: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Each benchmark's paired standard error of first - second over the items both kept (None where either did
    not keep its items)."""
    return {
        name: paired_stderr(score.get("item_scores"), second.get(name, {}).get("item_scores"))
        for name, score in first.items()
    }


def _gap(
    full: ScoreChange, lora: float, lora_error: float | None, full_error: float | None, paired: float | None
) -> ScoreGap:
    """LoRA's score, and LoRA - full with its standard error (paired where given) and whether it is within noise:
    score_change with full fine-tuning as the baseline."""
    change = ScoreChange.from_json(score_change(lora, full.score, lora_error, full_error, paired))
    return ScoreGap(full, lora, lora_error, change.change, change.change_stderr, change.paired, change.within_noise)
