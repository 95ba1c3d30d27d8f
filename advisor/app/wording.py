"""The words of a study and a full run, shared by the app's screens and the CLI's reporter: a trial's configuration,
its outcome, scores with their errors, the recommendation with its evidence, the full run's summary.

Pure text: no textual, no rich, no torch at import (checked in tests/test_pure_imports.py). Rich markup in the
recommendation's heading ([bold]) is rendered by whichever shows it.
"""

from __future__ import annotations

from typing import Any

from tuner.events import RunScored, TrainStarted, TrialScored
from tuner.paper import FIXED_ALPHA
from tuner.records import Recommendation, RunReport, StudyScores, TrialRecord
from tuner.records.reference import ReferenceSummary
from tuner.records.scores import ScoreChange
from tuner.scoring.benchmarks import BENCHMARKS
from tuner.scoring.benchmarks.roles import NOISE_SE
from tuner.study.space import lora_from_params


def describe_params(params: dict[str, Any]) -> str:
    """A trial's configuration in a few columns: 'all r16 1.3e-3', with alpha where it is not the fixed 32, the
    variant, and QLoRA where the trial trained on 4-bit weights."""
    if not params:
        return "-"
    lora = lora_from_params(params)
    parts = [lora.targets, f"r{lora.rank}"]
    if lora.alpha != FIXED_ALPHA:
        parts.append(f"\N{GREEK SMALL LETTER ALPHA}{lora.alpha:g}")
    parts.append(f"{float(params['learning_rate']):.1e}".replace("e-0", "e-").replace("e+0", "e+"))
    if lora.variant != "lora":
        parts.append(lora.variant)
    if params.get("quantize") == "nf4":  # 4-bit base weights, under --quantize search
        parts.append("QLoRA")
    return " ".join(parts)


def trial_outcome(trial: TrialRecord) -> str:
    """'complete', 'pruned', 'diverged' or 'fail'."""
    return "diverged" if trial.diverged() else trial.state.lower()


def trial_row(trial: TrialRecord) -> tuple[str, ...]:
    """A stored trial as a row of the live study's table (advisor.app.screens.study.COLUMNS)."""

    def figure(value: float | None, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) else "-"

    return (
        str(trial.number),
        trial_outcome(trial),
        figure(trial.target_loss, ".4f"),
        describe_params(trial.params),
        figure(trial.general_score, ".3f"),
        figure(trial.learning_score, ".3f"),
        str(trial.reason or "")[:60],
    )


def first_line(error: Exception) -> str:
    """An error in one line: its message's first, else its type's name."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def scores_text(event: TrialScored | RunScored) -> str:
    """A scored trial's (or the full run's) figures in one line."""
    parts = [f"{name} {value:.3f}" for name, value in event.scores.items()]
    if event.general is not None:
        parts.append(f"general mean {event.general:.3f}")
    return ", ".join(parts)


def with_error(value: float, error: float | None, sign: str = "") -> str:
    """'0.417 ± 0.082' (or '+0.012 ± 0.020' with sign '+'); the value alone where there is no error."""
    return f"{value:{sign}.3f}" + (f" ± {error:.3f}" if error is not None else "")


def change_text(name: str, figure: ScoreChange) -> str:
    """'general mean 0.417 ± 0.082 (base 0.444 ± 0.083): -0.028 ± 0.041 paired, within noise' (paired: the change's
    error from the per-item differences on the same items)."""
    paired = " paired" if figure.paired else ""
    change = with_error(figure.change, figure.change_stderr, "+") + paired
    verdict = "within noise" if figure.within_noise else "beyond noise (2 standard errors)"
    base = with_error(figure.base, figure.base_stderr)
    return f"{name} {with_error(figure.score, figure.stderr)} (base {base}): {change}, {verdict}"


def scores_lines(scores: StudyScores | None, run_dir: str | None) -> list[str]:
    """What the scoring stage found, for the recommendation text: the pick's learning and general scores against
    the base model's, each with its standard error."""
    if not scores:
        return []
    plan = scores.plan or {}
    if scores.base is None:
        return [f"  scores: none ({scores.note or plan.get('reason') or 'scoring is off'})"]
    lines = [f"  scores: {scores.items} items per benchmark ({plan.get('reason', '')})"]
    pick = scores.pick
    if pick is not None and (pick.general or pick.learning):
        lines.append(f"  trial {pick.trial} against the base model (± one standard error):")
        if pick.general:
            lines.append(f"    {change_text('general mean', pick.general)}")
        if pick.learning:
            lines.append(f"    {change_text(BENCHMARKS[pick.learning.benchmark or ''].title, pick.learning)}")
    elif scores.base_general is not None:
        lines.append(
            f"  base model: general mean {scores.base_general:.3f}"
            + (f", {scores.learning_benchmark} {scores.base_learning:.3f}" if scores.learning_benchmark else "")
        )
    if scores.note:
        lines.append(f"  {scores.note}")
    front = scores.pareto_front
    if front and len(scores.trials or {}) > 1:
        members = ", ".join(
            f"trial {p['trial']} (general {p['general']:.3f}, learning {p['learning']:.3f})" for p in front
        )
        lines.append(f"  Pareto front: {members}")
    if scores.plot:
        lines.append(f"  plot: {run_dir}/{scores.plot}")
    return lines


def recommendation_text(recommendation: Recommendation) -> str:
    """The recommended configuration, one line per choice with its evidence."""
    lines = [
        f"[bold]Recommended[/bold] for {recommendation.task} on {recommendation.model}: "
        f"lr {recommendation.learning_rate:.2e}, rank {recommendation.rank}, "
        f"alpha {recommendation.alpha:g}, targets {recommendation.targets}, "
        + (f"variant {recommendation.variant}, " if recommendation.variant != "lora" else "")
        + ("QLoRA (4-bit NF4 base), " if recommendation.quantize else "")
        + f"{recommendation.epochs} epochs",
    ]
    lines += [f"  {choice}: {why}" for choice, why in recommendation.evidence.items()]
    lines += scores_lines(recommendation.scores, recommendation.run_dir)
    lines += reference_lines(recommendation.reference)
    lines.append(f"  written to {recommendation.run_dir}/recommendation.json")
    return "\n".join(lines)


def reference_lines(reference: ReferenceSummary | None) -> list[str]:
    """Full fine-tuning beside the pick: its rates, the ratio of the best rates (the paper's finding: about 10x),
    the held-out loss gaps, paired over the confirm rows where measured there, and the score gaps where its best
    run was scored."""
    if not reference:
        return []
    runs = ", ".join(
        f"{run.rate:.3g} "
        + (f"{run.target_loss:.4f}" if run.target_loss is not None else "-")
        + (" (stopped)" if run.stopped else "")
        for run in sorted(reference.runs.values(), key=lambda run: run.rate)
    )
    lines = [
        "  reference, full fine-tuning; held-out loss by rate:",
        f"    {runs}",
        f"    LoRA's rate {reference.lora_rate:.3g} / full's best {reference.best_rate:.3g} = "
        f"{reference.rate_ratio:.3g}x",
        "    (LoRA Without Regret: about 10x; Biderman et al. 2024: 4-10x)",
    ]
    for figure, label in ((reference.target_loss, "task"), (reference.general_loss, "general-text")):
        confirm = figure.confirm
        if confirm:
            verdict = "within noise" if abs(confirm.gap) <= NOISE_SE * confirm.stderr else "beyond noise"
            lines.append(
                f"    {label} loss, LoRA - full: {confirm.gap:+.4f} ± {confirm.stderr:.4f}, "
                f"{verdict} ({confirm.rows} rows, paired)"
            )
        elif figure.gap is not None:
            lines.append(f"    {label} loss, LoRA - full: {figure.gap:+.4f} (no confirm rows to pair)")
    return lines + reference_score_lines(reference)


def reference_score_lines(reference: ReferenceSummary) -> list[str]:
    """Full fine-tuning's best run on the pick's benchmark items: its general and learning scores against the base
    model's, and LoRA's minus its own, each with its standard error (lines within 80 columns)."""
    scores = [
        (BENCHMARKS[figure.benchmark].title if figure.benchmark is not None else "general", figure)
        for figure in (reference.general_score, reference.learning_score)
        if figure is not None
    ]
    if not scores:
        return []
    items = reference.score_items
    lines = [f"    full fine-tuning (lr {reference.best_rate:.3g}) against the base, {items} items per benchmark:"]
    for title, figure in scores:
        full = figure.full
        change = with_error(full.change, full.change_stderr, "+") + (" paired" if full.paired else "")
        verdict = "within noise" if full.within_noise else "beyond noise"
        score = with_error(full.score, full.stderr)
        lines.append(f"      {title} {score} (base {full.base:.3f}): {change}, {verdict}")
    for title, figure in scores:
        gap = with_error(figure.gap, figure.stderr, "+") + (" (paired)" if figure.paired else "")
        verdict = "within noise" if figure.within_noise else "beyond noise"
        named = "general score" if title == "general" else f"learning ({title})"
        lines.append(f"    {named}, LoRA - full: {gap}, {verdict}")
    return lines


def train_start_text(event: TrainStarted) -> str:
    """'training 4 epochs, 144 steps', with the step a resumed run starts from."""
    resumed = f", resumed at step {event.start_step}" if event.start_step else ""
    return f"training {event.epochs} epoch{'s' * (event.epochs != 1)}, {event.total_steps} steps{resumed}"


def train_summary(report: RunReport) -> str:
    """The full run's outcome in a few lines: steps, where the adapter is, learning and forgetting."""
    training = report.training
    steps, epochs = training["steps"], training["epochs"]
    lines = [f"trained {steps} step{'s' * (steps != 1)} ({epochs:g} epoch{'s' * (epochs != 1)}) on {report.runtime}"]
    for row in training["epoch_losses"]:
        lines.append(f"  epoch {row['epoch']}: held-out {row['target_loss']:.4f}, general {row['general_loss']:.4f}")
    noise = report.change_noise or {}
    if report.scores:
        base, trained = report.scores["base"], report.scores["trained"]
        if "general" in noise:
            lines.append(f"  {change_text('general mean (forgetting)', ScoreChange.from_json(noise['general']))}")
        elif base.general is not None and trained.general is not None:
            lines.append(
                f"  general mean (forgetting): base {base.general:.3f}, trained {trained.general:.3f} "
                f"({trained.general - base.general:+.3f})"
            )
        if "learning" in noise:
            learned = ScoreChange.from_json(noise["learning"])
            lines.append(f"  {change_text(f'{report.learning_benchmark} (learning)', learned)}")
        elif base.learning is not None and trained.learning is not None:
            lines.append(
                f"  {report.learning_benchmark} (learning): base {base.learning:.3f}, trained {trained.learning:.3f} "
                f"({trained.learning - base.learning:+.3f})"
            )
    if report.adapter:
        lines.append(f"adapter: {report.adapter}")
    if report.model_dir:
        lines.append(f"model (full fine-tuning): {report.model_dir}")
    if report.merged:
        lines.append(f"merged model: {report.merged}")
    lines.append(f"report: {report.out_dir}/report.md")
    return "\n".join(lines)
