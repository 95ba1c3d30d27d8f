"""The full run's report: report.json (a RunReport), report.md and the learning-vs-forgetting PNG."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.defaults import VARIANT_LABELS
from tuner.models.load import is_complete
from tuner.records import RunReport, ScoreRow
from tuner.rundir import write_json
from tuner.scoring.benchmarks import (
    BENCHMARKS,
    LEARNING_TASK,
    forgetting_score,
    forgetting_stderr,
    paired_stderr,
    score_change,
    stored_stderr,
)
from tuner.settings import RunSettings

if TYPE_CHECKING:
    from tuner.scoring.benchmarks import EvalSettings

ADAPTER = "adapter"
FULL_MODEL = "model"
"""Full fine-tuning's trained model (a from_pretrained directory), where a LoRA run keeps its adapter."""
MERGED = "merged"
REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
PLOT_FILE = "learning_vs_forgetting.png"


def score_row(scores: dict[str, dict[str, Any]], learning: str | None) -> ScoreRow:
    """A model's scores (benchmark -> TaskScore as a dict) as a row: figures, forgetting mean and learning."""
    figures = {name: score["score"] for name, score in scores.items()}
    return ScoreRow(figures, forgetting_score(figures), figures.get(learning) if learning else None)


def run_report(
    settings: RunSettings,
    scoring: EvalSettings | None,
    out_dir: Path,
    history: dict[str, Any],
    scores: dict[str, Any],
    runtime: str,
) -> RunReport:
    """The run's figures as report.json, report.md and the learning-vs-forgetting PNG in `out_dir`."""
    learning = LEARNING_TASK.get(settings.task)
    full = settings.recipe.is_full
    report = RunReport(
        settings=settings.identity(),
        runtime=runtime,
        out_dir=str(out_dir),
        adapter=None if full else str(out_dir / ADAPTER),
        model_dir=str(out_dir / FULL_MODEL) if full else None,
        merged=str(out_dir / MERGED) if is_complete(out_dir / MERGED) else None,
        training={k: v for k, v in history.items() if k != "loss_curve"},
        scoring=asdict(scoring) if scoring else None,
    )
    if scores:
        rows = {label: score_row(scores[label], learning) for label in ("base", "trained")}
        for label, epoch_scores in sorted(scores.get("epochs", {}).items(), key=lambda kv: int(kv[0])):
            rows[f"epoch {label}"] = score_row(epoch_scores, learning)
        base, trained = rows["base"], rows["trained"]
        plot = _plot(settings, out_dir, rows, learning)
        report = replace(
            report,
            scores=rows,
            learning_benchmark=learning if learning in scores["base"] else None,
            change={
                "general": _difference(trained.general, base.general),
                "learning": _difference(trained.learning, base.learning),
            },
            change_noise=change_noise(scores["trained"], scores["base"], learning),
            plot=plot.name if plot else None,
        )
    write_json(out_dir / REPORT_JSON, report.to_json())
    (out_dir / REPORT_MARKDOWN).write_text(report_markdown(report), encoding="utf-8")
    return report


def change_noise(
    trained: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]], learning: str | None
) -> dict[str, dict[str, Any]]:
    """The general mean's and the learning benchmark's change against the base, each with its standard error: from
    the per-item differences where both models kept their items (paired), else the two errors as independent."""

    names = [name for name in trained if name in base]
    paired = {name: paired_stderr(trained[name].get("item_scores"), base[name].get("item_scores")) for name in names}
    if any(value is None for value in paired.values()):
        paired = {}
    figures = {label: {n: s["score"] for n, s in scores.items()} for label, scores in (("t", trained), ("b", base))}
    result: dict[str, dict[str, Any]] = {}
    general, base_general = forgetting_score(figures["t"]), forgetting_score(figures["b"])
    if general is not None and base_general is not None:
        errors = [forgetting_stderr({n: stored_stderr(s) for n, s in scores.items()}) for scores in (trained, base)]
        result["general"] = score_change(
            general,
            base_general,
            *errors,
            forgetting_stderr(paired) if paired else None,  # type: ignore[arg-type]
        )
    if learning is not None and learning in names:
        one, other = trained[learning], base[learning]
        result["learning"] = score_change(
            one["score"], other["score"], stored_stderr(one), stored_stderr(other), paired.get(learning)
        )
    return result


def _difference(after: float | None, before: float | None) -> float | None:
    return after - before if after is not None and before is not None else None


def _plot(settings: RunSettings, out_dir: Path, rows: dict[str, ScoreRow], learning: str | None) -> Path | None:
    from tuner.records import ScorePoint
    from tuner.scoring.plot import write_png

    points = [
        ScorePoint(label, row.general, row.learning, is_base=label == "base")
        for label, row in rows.items()
        if row.general is not None and row.learning is not None
    ]
    if len(points) < 2 or learning is None:
        return None
    title = f"{settings.task}: learning vs forgetting ({settings.model})"
    return write_png(points, out_dir / PLOT_FILE, learning_name=BENCHMARKS[learning].title, title=title)


def _noise_text(figure: dict[str, Any] | None) -> str:
    """' ± 0.021 (paired over the same items), within noise', or nothing for a report from before errors were kept."""
    if not figure or figure.get("change_stderr") is None:
        return ""
    how = " (paired over the same items)" if figure.get("paired") else ""
    verdict = "within noise" if figure["within_noise"] else "beyond noise (2 standard errors)"
    return f" ± {figure['change_stderr']:.3f}{how}, {verdict}"


def report_markdown(report: RunReport) -> str:
    """The report a person reads: what was trained, how it went, and what it learned and forgot."""
    settings, training = report.settings, report.training
    lora = settings.get("lora")
    if lora is None:  # full fine-tuning
        trained = "Full fine-tuning of every weight"
        saved = f"- Model (from_pretrained): `{report.model_dir}`"
    else:
        variant = VARIANT_LABELS[lora.get("variant", "lora")]  # plain LoRA runs leave the variant out
        trained = f"Adapter: {variant} r={lora['rank']}, alpha={lora['alpha']:g}, targets {lora['targets']}"
        saved = f"- Adapter (PEFT format): `{report.adapter}`" + (
            f"; merged model: `{report.merged}`" if report.merged else ""
        )
    lines = [
        f"# Full run: {settings['task']} on {settings['model']}",
        "",
        f"- {trained}, learning rate {settings['learning_rate']:.3g}, {settings['epochs']} epochs, "
        f"batch {settings['batch_size']} x {settings['seq_len']} tokens, seed {settings['seed']}",
        f"- Trained on {training['train_examples']} examples ({training['train_rows']} packed rows, "
        f"{training['train_tokens']:,} tokens per epoch): {training['steps']} optimizer steps on {report.runtime}",
        saved,
        "",
        "## Held-out loss after each epoch",
        "",
        "| epoch | step | task held-out loss | general-text loss |",
        "|---|---|---|---|",
    ]
    for row in training["epoch_losses"]:
        general = f"{row['general_loss']:.4f}" if row["general_loss"] is not None else "-"
        lines.append(f"| {row['epoch']} | {row['step']} | {row['target_loss']:.4f} | {general} |")
    scores = report.scores
    lines += ["", "## Learning and forgetting", ""]
    if not scores:
        lines.append("Not scored (the run was started without scoring).")
        return "\n".join(lines) + "\n"
    names = list(scores["base"].scores)
    lines += [
        "| model | " + " | ".join(BENCHMARKS[n].title for n in names) + " | general (mean of 3) |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for label, row in scores.items():
        cells = [f"{row.scores[n]:.3f}" for n in names]
        general = f"{row.general:.3f}" if row.general is not None else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {general} |")
    limit = (report.scoring or {}).get("limit")
    items = f"{limit} items per benchmark (a seeded sample)" if limit else "the full benchmarks"
    lines += [
        "",
        f"Scored on {items}. Forgetting = the change in the general mean (HellaSwag, WinoGrande, "
        "ARC-Challenge) against the base model, as in Biderman et al. 2024.",
    ]
    change = report.change or {}
    noise = report.change_noise or {}
    if change.get("general") is not None:
        lines.append(f"- General mean change: {change['general']:+.3f}{_noise_text(noise.get('general'))}")
    if change.get("learning") is not None and report.learning_benchmark is not None:
        title = BENCHMARKS[report.learning_benchmark].title
        lines.append(f"- {title} change: {change['learning']:+.3f}{_noise_text(noise.get('learning'))}")
    if report.plot:
        lines += ["", f"![learning vs forgetting]({report.plot})"]
    return "\n".join(lines) + "\n"
