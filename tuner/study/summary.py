"""The end of a study: its trial files, the scores of the base model and the scored trials, their Pareto front
(learning against the general score) and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.records import StudyScores, TrialRecord
from tuner.records.scores import PickSummary, ScoreChange
from tuner.rundir import write_json
from tuner.scoring.benchmarks import (
    BENCHMARKS,
    LEARNING_TASK,
    forgetting_score,
    forgetting_stderr,
    paired_stderr,
    score_change,
    score_stderr,
    stored_stderr,
)
from tuner.settings import StudySettings
from tuner.study.reference import current_scores
from tuner.study.state import StudyState
from tuner.study.trials import ended_trials, trial_record, trial_scores

if TYPE_CHECKING:
    import optuna

PLOT_FILE = "learning_vs_forgetting.png"
FULL_LABEL = "full fine-tuning"
"""The reference arm's point on the plot: full fine-tuning's best run, scored on the pick's items."""
TRIALS_DIR = "trials"
FINALISTS_DIR = "finalists"
"""The adapters of the best completed trials, kept when only the pick is scored (PEFT's format)."""


def trial_path(run_dir: Path, number: int) -> Path:
    """Where a trial's record is written."""
    return run_dir / TRIALS_DIR / f"trial_{number:04d}.json"


def write_trial(run_dir: Path, record: TrialRecord) -> None:
    """Write one trial's record (whole, atomically)."""
    write_json(trial_path(run_dir, record.number), record.to_json())


def write_trials(run_dir: Path, study: optuna.Study) -> list[TrialRecord]:
    """Write every ended trial's record, interrupted ones with their reason (and with confirm-set losses where they
    were measured after the search); returns them."""
    confirmed = StudyState(study).confirmed or {}
    records = [trial_record(t) for t in ended_trials(study)]
    records = [replace(r, confirm=confirmed.get(str(r.number), r.confirm)) for r in records]
    for record in records:
        write_trial(run_dir, record)
    return records


def study_scores(
    settings: StudySettings, run_dir: Path, state: StudyState, records: Sequence[TrialRecord]
) -> StudyScores | None:
    """The study's scores: the base model, the trials that were scored (or the pick, scored after the search),
    each with its standard error, their Pareto front and the plot (with full fine-tuning's best run where the
    reference arm scored it)."""
    from tuner.records import ScorePoint
    from tuner.scoring.plot import pareto_front, write_png

    base, plan, pick = state.base_scores, state.score_plan, state.pick_scores or {}
    if base is None or ((plan or {}).get("mode") == "pick" and "scores" not in pick):
        note = pick.get("note")
        return StudyScores(plan=plan, note=note) if plan or note else None
    base_figures = {name: score["score"] for name, score in base.items()}
    items = pick.get("items") or (plan or {}).get("limit") or None
    trials = {str(r.number): r.scores for r in records if r.scores}
    stderr = {"base": {name: stored_stderr(score) for name, score in base.items()}}
    for number, figures in trials.items():
        stderr[number] = {name: score_stderr(value, items or 0) for name, value in figures.items()}
    paired: dict[str, dict[str, float]] = {}
    if "scores" in pick:
        trials[str(pick["trial"])] = {name: score["score"] for name, score in pick["scores"].items()}
        stderr[str(pick["trial"])] = {name: stored_stderr(score) for name, score in pick["scores"].items()}
        differences = {
            name: paired_stderr(score.get("item_scores"), base.get(name, {}).get("item_scores"))
            for name, score in pick["scores"].items()
        }
        if all(error is not None for error in differences.values()):
            paired[str(pick["trial"])] = differences  # type: ignore[assignment]
    learning = LEARNING_TASK.get(settings.task)
    learning_benchmark = learning if learning in base_figures else None
    scores = StudyScores(
        plan=plan,
        base=base_figures,
        base_general=forgetting_score(base_figures),
        base_learning=base_figures.get(learning) if learning else None,
        learning_benchmark=learning_benchmark,
        trials=trials,
        stderr=stderr,
        items=items,
        seconds={"estimated": pick["estimated_seconds"], "measured": pick["seconds"]} if "seconds" in pick else None,
        paired_stderr=paired or None,
    )
    if learning_benchmark is None:
        if learning is None:
            return scores
        note = f"{learning} not scored: it runs generated code; pass --allow-code-execution"
        return replace(scores, note=note)
    points = [ScorePoint("base", scores.base_general, scores.base_learning, is_base=True)]
    for number, figures in trials.items():
        general = forgetting_score(figures)
        if general is not None and figures.get(learning_benchmark) is not None:
            points.append(ScorePoint(f"trial {number}", general, figures[learning_benchmark]))
    full = current_scores(state.reference or {}, state.reference_scores, items)
    if full is not None:  # full fine-tuning's best run beside the trials, as in the paper's Figure 1
        figures = {name: score["score"] for name, score in full["scores"].items()}
        general = forgetting_score(figures)
        if general is not None and figures.get(learning_benchmark) is not None:
            points.append(ScorePoint(FULL_LABEL, general, figures[learning_benchmark], is_reference=True))
    front = [
        {"trial": int(p.label.removeprefix("trial ")), "general": p.general, "learning": p.learning}
        for p in pareto_front(points)
    ]
    plot = None
    if len(points) > 1:
        title = f"{settings.task}: learning vs forgetting ({settings.model})"
        plot = write_png(points, run_dir / PLOT_FILE, learning_name=BENCHMARKS[learning].title, title=title).name
    return replace(scores, pareto_front=front, plot=plot, points=points)


def pick_task_scores(
    state: StudyState, trial: int | None
) -> tuple[int, dict[str, dict[str, Any]], dict[str, dict[str, Any]]] | None:
    """The pick's benchmark scores with the base model's on the same items (each benchmark -> TaskScore as a dict,
    item scores included), and the items per benchmark: scored after the search, or as a trial when each trial
    was; None where the pick, or the base model on its items, was not scored."""
    base, plan, pick = state.base_scores, state.score_plan or {}, state.pick_scores or {}
    if trial is None or base is None:
        return None
    if pick.get("trial") == trial and "scores" in pick:
        items, scores = int(pick["items"]), pick["scores"]
    elif plan.get("mode", "trials") == "trials" and plan.get("limit"):
        items, scores = int(plan["limit"]), trial_scores(state.study, trial)
    else:
        return None
    if not scores or state.base_scores_items not in (None, items):
        return None
    return items, scores, base


def pick_summary(scores: StudyScores | None, trial: int | None) -> StudyScores | None:
    """The scores with the recommended trial's learning and general figures against the base model's, each with
    its standard error; the changes' errors come from the per-item differences where both models kept their items
    (paired), else treat the two as independent (conservative on the same items)."""
    if scores is None or trial is None or not scores.trials or str(trial) not in scores.trials:
        return scores
    figures, errors = scores.trials[str(trial)], (scores.stderr or {}).get(str(trial), {})
    base, base_errors = scores.base or {}, (scores.stderr or {}).get("base", {})
    paired = (scores.paired_stderr or {}).get(str(trial))
    general = learning = None
    general_score, base_general = forgetting_score(figures), forgetting_score(base)
    if general_score is not None and base_general is not None:
        general_errors = (forgetting_stderr(errors), forgetting_stderr(base_errors))
        general = ScoreChange.from_json(
            score_change(general_score, base_general, *general_errors, forgetting_stderr(paired) if paired else None)
        )
    name = scores.learning_benchmark
    if name is not None and name in figures and name in base:
        paired_error = (paired or {}).get(name)
        change = score_change(figures[name], base[name], errors.get(name), base_errors.get(name), paired_error)
        learning = replace(ScoreChange.from_json(change), benchmark=name)
    summary = PickSummary(trial, scores.items, paired is not None, general, learning)
    return replace(scores, pick=summary)
