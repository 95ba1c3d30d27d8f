"""The recommendation: the best trial's configuration, each choice with its evidence (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tuner.defaults import VARIANT_LABELS
from tuner.paper import FINDINGS, MIN_IFT_EPOCHS, paper_learning_rate
from tuner.records import ObjectiveSummary, Recommendation, StudyScores, TrialRecord
from tuner.settings import StudySettings
from tuner.study.confirm import confirm_choice
from tuner.study.objective import objective_value
from tuner.study.space import SearchSpace, lora_from_params, quantize_from_params


def best_by(trials: Sequence[TrialRecord], key: str) -> dict[str, tuple[float, int]]:
    """For each value of a parameter: the best objective among completed trials and how many there were."""
    groups: dict[str, list[float]] = {}
    for trial in trials:
        groups.setdefault(str(trial.params[key]), []).append(float(trial.value))  # type: ignore[arg-type]
    return {name: (min(values), len(values)) for name, values in sorted(groups.items(), key=lambda kv: min(kv[1]))}


def _group_text(groups: dict[str, tuple[float, int]]) -> str:
    return ", ".join(f"{name} {best:.4f} ({count} trial{'s' * (count != 1)})" for name, (best, count) in groups.items())


PRECISION_LABELS = {"none": "16-bit", "nf4": "QLoRA (4-bit NF4)"}


def _precision_evidence(
    trials: Sequence[TrialRecord], pick: str | None, source: str, base_general: float | None, goal: float
) -> str:
    """Under --quantize search: the pick's base weights, the best objective in each precision, and the pairs of
    trials that differ only in it (the single guess is run on both), compared at the last step both reached."""
    searched = [t for t in trials if "quantize" in t.params and t.state == "COMPLETE" and t.value is not None]
    groups = {PRECISION_LABELS[kind]: best for kind, best in best_by(searched, "quantize").items()}
    text = f"{PRECISION_LABELS[pick or 'none']} base weights from {source}, searched with --quantize search."
    if groups:
        text += f" Best objective by base weights here: {_group_text(groups)}."
    by_config: dict[str, dict[str, TrialRecord]] = {}
    for trial in trials:
        if "quantize" in trial.params and trial.evaluations:
            config = repr(sorted((k, v) for k, v in trial.params.items() if k != "quantize"))
            by_config.setdefault(config, {})[str(trial.params["quantize"])] = trial
    gaps = []
    for kinds in by_config.values():
        if {"none", "nf4"} <= set(kinds) and base_general is not None:
            full, four = ({int(e[0]): e for e in kinds[kind].evaluations} for kind in ("none", "nf4"))
            step = max(set(full) & set(four), default=None)
            if step is not None:
                (_, *losses16), (_, *losses4) = full[step], four[step]
                gap = objective_value(*losses4, base_general, goal) - objective_value(*losses16, base_general, goal)
                gaps.append(f"{gap:+.4f} at step {step}")
    if gaps:
        text += f" The same configuration on 4-bit weights, against 16-bit: {', '.join(gaps)} objective."
    return f"{text} Finding: {FINDINGS['qlora']}."


def _stopped_rates(trials: Sequence[TrialRecord]) -> list[float]:
    return sorted(float(t.params["learning_rate"]) for t in trials if t.state == "PRUNED" and t.diverged())


def recommend(
    settings: StudySettings,
    trials: Sequence[TrialRecord],
    base_losses: dict[str, float],
    *,
    runtime: str | None = None,
    run_dir: str | None = None,
    scores: StudyScores | None = None,
    search: list[str] | None = None,
) -> Recommendation:
    """Pick the completed trial with the lowest objective and explain each of its choices."""
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    counts = {state: sum(t.state == state for t in trials) for state in ("COMPLETE", "PRUNED", "FAIL")}
    confirmation = confirm_choice(complete, settings.goal, base_losses.get("confirm_general_loss"))
    if complete:
        best = min(complete, key=lambda t: float(t.value))  # type: ignore[arg-type]
        if confirmation is not None:
            best = next(t for t in complete if t.number == confirmation.pick)
        params, source = best.params, f"trial {best.number}"
    else:
        best = None
        params, source = SearchSpace().paper_configurations(settings.task)[0], "the paper (no trial completed)"
    lora = lora_from_params(params)
    learning_rate = float(params["learning_rate"])
    paper_rate = paper_learning_rate(settings.task, lora.rank)
    diverged = _stopped_rates(trials)

    lr_evidence = (
        f"{learning_rate:.3g} from {source}, {learning_rate / paper_rate:.2g}x the paper's LoRA rate for "
        f"{settings.task if settings.task != 'custom' else 'code'} at rank {lora.rank} ({paper_rate:g})"
    )
    if diverged:
        lr_evidence += f"; {len(diverged)} trial(s) diverged, the lowest at {diverged[0]:.3g}"
    evidence = {
        "learning_rate": f"{lr_evidence}. Finding: {FINDINGS['learning_rate']}.",
        "rank": f"{lora.rank} from {source}. Finding: {FINDINGS['rank']}.",
        "alpha": f"{lora.alpha:g} (= {lora.alpha / lora.rank:g}r) from {source}. Finding: {FINDINGS['alpha']}.",
        "target_modules": f"{lora.targets} from {source}. Finding: {FINDINGS['targets']}.",
        "epochs": f"{MIN_IFT_EPOCHS}. Finding: {FINDINGS['epochs']}.",
    }
    if lora.variant != "lora":
        evidence["variant"] = f"{VARIANT_LABELS[lora.variant]} from {source}."
    if len(complete) > 1:
        by_targets = best_by(complete, "targets")
        by_rank = best_by(complete, "rank")
        evidence["target_modules"] += f" Best objective by targets here: {_group_text(by_targets)}."
        evidence["rank"] += f" Best objective by rank here: {_group_text(by_rank)}."

    if any("quantize" in t.params for t in trials):
        base_general = base_losses.get("general_loss")
        evidence["quantize"] = _precision_evidence(
            trials, quantize_from_params(params), source, base_general, settings.goal
        )
    if search:
        evidence["search"] = " ".join(search)
    if confirmation is not None:
        evidence["choice"] = confirmation.describe(settings.budget.eval_rows)

    objective = ObjectiveSummary(
        goal=settings.goal,
        base_target_loss=base_losses.get("target_loss"),
        base_general_loss=base_losses.get("general_loss"),
        base_confirm_target_loss=base_losses.get("confirm_target_loss"),
        base_confirm_general_loss=base_losses.get("confirm_general_loss"),
    )
    if best is not None:
        objective = replace(
            objective,
            value=best.value,
            target_loss=best.target_loss,
            general_loss=best.general_loss,
            forgetting_rise=best.forgetting_rise,
        )
    if confirmation is not None:
        objective = replace(
            objective,
            confirm_value=confirmation.objectives[confirmation.pick],
            confirm_rows=confirmation.rows,
            confirm_within_noise=confirmation.within_noise(),
        )
    return Recommendation(
        task=settings.task,
        model=settings.model,
        trial=best.number if best is not None else None,
        learning_rate=learning_rate,
        rank=lora.rank,
        alpha=lora.alpha,
        targets=lora.targets,
        target_modules=lora.target_modules(),
        epochs=MIN_IFT_EPOCHS,
        variant=lora.variant,
        quantize=quantize_from_params(params),
        objective=objective,
        trials={state.lower(): count for state, count in counts.items()},
        evidence=evidence,
        runtime=runtime,
        run_dir=run_dir,
        scores=scores,
    )
