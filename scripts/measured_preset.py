"""A shipped preset from LoRA Advisor's own measured runs: a finished study and the full run trained from its
pick (`advisor train --from RUN_DIR`), with the figures of both in the preset's header (source: measured).

    advisor tune --task math --trials 8 --trial-tokens 12288 --seq-len 256 --out runs/measured-math
    advisor train --from runs/measured-math --train-examples 256 --epochs 2 --eval-limit 30
    python3 scripts/measured_preset.py runs/measured-math math-cpu-measured

The preset keeps the study's pick (rate, rank, alpha, targets, batch, row length, warm-up) and the full run's
epochs; the header gives the study's search and held-out losses, the full run's size and time, and its learning
and forgetting scores against the base model with their paired standard errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor.presets import PRESETS_DIR, Preset, preset_from_run, write_preset  # noqa: E402 - checkout importable
from tuner.errors import AdvisorError  # noqa: E402
from tuner.records.reference import ReferenceSummary  # noqa: E402
from tuner.scoring.benchmarks import BENCHMARKS  # noqa: E402


def change_text(figure: dict[str, Any]) -> str:
    """'0.475 ± 0.045 (base 0.483 ± 0.045), change -0.008 ± 0.035 paired, within noise'."""
    verdict = "within noise" if figure.get("within_noise") else "beyond noise (2 standard errors)"
    paired = " paired" if figure.get("paired") else ""
    return (
        f"{figure['score']:.3f} ± {figure['stderr']:.3f} (base {figure['base']:.3f} ± {figure['base_stderr']:.3f}), "
        f"change {figure['change']:+.3f} ± {figure['change_stderr']:.3f}{paired}, {verdict}"
    )


def reference_text(reference: ReferenceSummary | None) -> str:
    """The study's reference arm in a sentence: full fine-tuning's best rate and the LoRA - full gaps."""
    if not reference:
        return ""
    text = (
        f" The study's reference arm trained every weight at {len(reference.runs)} rates: full fine-tuning's best "
        f"{reference.best_rate:.3g}, LoRA's rate {reference.rate_ratio:.3g}x it"
    )
    for figure, label in ((reference.general_score, "general score"), (reference.learning_score, "learning score")):
        if figure is not None and figure.stderr is not None:
            verdict = "within noise" if figure.within_noise else "beyond noise"
            text += f"; {label} LoRA - full {figure.gap:+.3f} ± {figure.stderr:.3f} ({verdict})"
    return text + "."


def measured_preset(run_dir: Path, name: str, train_dir: Path | None = None) -> tuple[Preset, str]:
    """The preset and its header from a finished study and its full run; AdvisorError when either is missing."""
    preset, finished = preset_from_run(run_dir)
    train_dir = train_dir or run_dir / "train"
    report_file = train_dir / "report.json"
    if not report_file.is_file():
        raise AdvisorError(f"{report_file} not found: train the pick first (advisor train --from {run_dir})")
    report = json.loads(report_file.read_text(encoding="utf-8"))
    rec = finished.recommendation
    training = report["training"]
    epochs = round(training["epochs"])
    noise = report.get("change_noise") or {}
    scores = report.get("scoring") or {}
    items = scores.get("limit") if isinstance(scores, dict) else None
    benchmark = BENCHMARKS[report["learning_benchmark"]].title if report.get("learning_benchmark") else "learning"
    objective = {key: float(objective) for key, objective in rec.objective.to_json().items() if key != "goal"}
    loss = {key: f"{objective.get(key, float('nan')):.4f}" for key in ("target_loss", "base_target_loss")}
    general = {key: f"{objective.get(key, float('nan')):.4f}" for key in ("general_loss", "base_general_loss")}
    study = (
        f"the study in {run_dir.name} ({rec.trials.get('complete', 0)} of its trials complete, "
        f"{rec.trials.get('pruned', 0)} pruned, of {finished.settings.budget.train_tokens:,} tokens each) picked "
        f"trial {rec.trial}: held-out {rec.task} loss {loss['target_loss']} (base {loss['base_target_loss']}), "
        f"general-text loss {general['general_loss']} (base {general['base_general_loss']})"
    )
    run = (
        f"the full run trained it on {training['train_examples']:,} examples for {epochs} epochs ({training['steps']} "
        f"steps, {training['train_tokens']:,} tokens per epoch) in {training['seconds_this_session']:.0f} s on "
        f"{report.get('runtime', rec.runtime)}"
    )
    figures = [
        f"{label}: {change_text(noise[key])}"
        for key, label in (("learning", benchmark), ("general", "general mean"))
        if key in noise
    ]
    measured = (
        f"Measured by LoRA Advisor on {rec.model} ({rec.task}): {study}; {run}. Scored against the base model on "
        f"the same {items or 'few'} items per benchmark: " + "; ".join(figures) + ". A change within noise is no "
        "finding: at this scale the preset's evidence is the study's held-out losses." + reference_text(rec.reference)
    )
    notes = (
        f"Our own study and full run on the built-in model ({rec.task}), not the paper's settings: learning rate "
        f"{rec.learning_rate:g}, rank {rec.rank}, alpha {rec.alpha:g}, {rec.targets} linear layers from trial "
        f"{rec.trial}; {epochs} epochs as the full run trained"
        + (
            f" (the study advised {rec.epochs}, the paper's minimum; fewer were run here for time)"
            if epochs < rec.epochs
            else ""
        )
        + ". Figures in the header."
    )
    preset = replace(
        preset,
        name=name,
        source="measured",
        recipe=replace(preset.recipe, epochs=epochs),
        memory_budget=preset.memory_budget,
        notes=notes,
        extra={
            "study": str(run_dir),
            "trial": rec.trial,
            "full_run": str(train_dir),
            "objective": {key: round(value, 5) for key, value in objective.items()},
            "change_noise": {
                key: {field: round(value, 5) if isinstance(value, float) else value for field, value in figure.items()}
                for key, figure in noise.items()
            },
        },
    )
    commands = (
        f"Reproduce: advisor tune --task {rec.task} --trials {finished.settings.trials} --trial-tokens "
        f"{finished.settings.budget.train_tokens} --seq-len {finished.settings.budget.seq_len}"
        + (" --reference full" if rec.reference else "")
        + f" --out {run_dir}; "
        f"advisor train --from {run_dir} --train-examples {training['train_examples']} --epochs {epochs}"
        + (f" --eval-limit {items}" if items else "")
        + "; python3 scripts/measured_preset.py "
        + f"{run_dir} {name}."
    )
    header = "\n".join(textwrap.fill(text, width=108) for text in (measured, commands))
    return preset, header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished study's run directory")
    parser.add_argument("name", help="the preset's name (written to presets/NAME.yaml)")
    parser.add_argument("--train", type=Path, default=None, help="the full run's directory (default: RUN_DIR/train)")
    parser.add_argument("--out", type=Path, default=None, help="the preset file (default: presets/NAME.yaml)")
    args = parser.parse_args(argv)
    try:
        preset, header = measured_preset(args.run_dir, args.name, args.train)
    except AdvisorError as error:
        print(f"measured_preset: {error}", file=sys.stderr)
        return 2
    path = write_preset(preset, args.out or PRESETS_DIR / f"{args.name}.yaml", header)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
