"""The end of a study: its trial files, the scores of the base model and the scored trials, their Pareto front
(learning against the general score) and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.benchmarks import BENCHMARKS, LEARNING_TASK, forgetting_score
from tuner.records import StudyScores, TrialRecord
from tuner.rundir import write_json
from tuner.settings import StudySettings
from tuner.study_state import StudyState, finished_trials, trial_record

if TYPE_CHECKING:
    import optuna

PLOT_FILE = "learning_vs_forgetting.png"
TRIALS_DIR = "trials"


def trial_path(run_dir: Path, number: int) -> Path:
    """Where a trial's record is written."""
    return run_dir / TRIALS_DIR / f"trial_{number:04d}.json"


def write_trial(run_dir: Path, record: TrialRecord) -> None:
    """Write one trial's record (whole, atomically)."""
    write_json(trial_path(run_dir, record.number), record.to_json())


def write_trials(run_dir: Path, study: optuna.Study) -> list[TrialRecord]:
    """Write every finished trial's record; returns them."""
    records = [trial_record(t) for t in finished_trials(study)]
    for record in records:
        write_trial(run_dir, record)
    return records


def study_scores(
    settings: StudySettings, run_dir: Path, state: StudyState, records: Sequence[TrialRecord]
) -> StudyScores | None:
    """The study's scores: the base model, the trials that were scored, their Pareto front and the plot."""
    from tuner.plot import ScorePoint, pareto_front, write_png

    base = state.base_scores
    if base is None:
        plan = state.score_plan
        return StudyScores(plan=plan) if plan else None
    base_figures = {name: score["score"] for name, score in base.items()}
    learning = LEARNING_TASK.get(settings.task)
    learning_benchmark = learning if learning in base_figures else None
    scores = StudyScores(
        plan=state.score_plan,
        base=base_figures,
        base_general=forgetting_score(base_figures),
        base_learning=base_figures.get(learning) if learning else None,
        learning_benchmark=learning_benchmark,
        trials={str(r.number): r.scores for r in records if r.scores},
    )
    if learning_benchmark is None:
        if learning is None:
            return scores
        note = f"{learning} not scored: it runs generated code; pass --allow-code-execution"
        return replace(scores, note=note)
    points = [ScorePoint("base", scores.base_general, scores.base_learning, is_base=True)]
    points += [
        ScorePoint(f"trial {r.number}", r.general_score, r.learning_score)
        for r in records
        if r.general_score is not None and r.learning_score is not None
    ]
    front = [
        {"trial": int(p.label.removeprefix("trial ")), "general": p.general, "learning": p.learning}
        for p in pareto_front(points)
    ]
    plot = None
    if len(points) > 1:
        title = f"{settings.task}: learning vs forgetting ({settings.model})"
        plot = write_png(points, run_dir / PLOT_FILE, learning_name=BENCHMARKS[learning].title, title=title).name
    return replace(scores, pareto_front=front, plot=plot, points=[asdict(p) for p in points])
