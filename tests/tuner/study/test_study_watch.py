"""Watching a shared study through its storage: a SQLite study written by hand with ask/tell and fake numbers (no
model), looked at between its steps."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState as OptunaState

from tuner import events
from tuner.errors import AdvisorError
from tuner.records import StudyScores
from tuner.settings import DataSettings, StudySettings, TrainBudget
from tuner.study.budget import StudyBudget
from tuner.study.recommend import recommend
from tuner.study.space import SearchSpace
from tuner.study.state import StudyState, run_dir_name, shown_url
from tuner.study.trials import TrialState, finished_trials, trial_record
from tuner.study.watch import INTERRUPTED, StudyWatcher, open_watched

BASE_LOSSES = {"target_loss": 2.0, "general_loss": 1.5}
SETTINGS = StudySettings(model="tiny", data=DataSettings("math"), trials=3, budget=TrainBudget(train_tokens=4096))


def start_study(url: str, name: str = "demo", settings: StudySettings = SETTINGS) -> optuna.Study:
    """A study as `advisor tune --storage URL --study NAME` leaves it before its first trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, direction="minimize")
    state = StudyState(study)
    state.start(settings)
    state.record_run(settings)
    state.base_losses = {**BASE_LOSSES, "model_identity": "tiny"}
    return study


def start_trial(study: optuna.Study, rank: int = 16) -> optuna.Trial:
    """A trial claimed by a worker, its configuration drawn (the paper's at `rank`)."""
    params = next(p for p in SearchSpace().paper_configurations("math") if p["rank"] == rank)
    study.enqueue_trial(params)
    trial = study.ask()
    SearchSpace().suggest(trial)
    return trial


def end_trial(study: optuna.Study, trial: optuna.Trial, target_loss: float, pruned: bool = False) -> None:
    """A trial that trained 4 steps, evaluated at steps 2 and 4 (or was pruned at 2), and told the study."""
    state = TrialState(trial)
    evaluations = [[2, target_loss + 0.2, 1.6]] if pruned else [[2, target_loss + 0.2, 1.6], [4, target_loss, 1.55]]
    state.trained([[1, 2.4], [2, 2.2], [3, 2.1], [4, 2.0]][: 2 if pruned else 4], evaluations, 900.0, 3.5)
    state.losses(evaluations[-1][1], evaluations[-1][2], evaluations[-1][2] - BASE_LOSSES["general_loss"])
    for step, target, _ in evaluations:
        trial.report(target + 0.1, int(step))
    if pruned:
        state.pruned("pruned at step 2: objective is not in the best 1/3 (successive halving)")
        study.tell(trial, state=OptunaState.PRUNED)
    else:
        study.tell(trial, target_loss + 0.1)


def finish_study(study: optuna.Study, run_dir: Path, settings: StudySettings = SETTINGS) -> dict:
    """The recommendation the worker that summarised the study stored (built from its trials, as it is)."""
    records = [trial_record(t) for t in finished_trials(study)]
    chosen = recommend(settings, records, BASE_LOSSES, runtime="cpu (float32)", run_dir=str(run_dir))
    StudyState(study).recommendation = chosen.to_json()
    return chosen.to_json()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


def kinds(found: list[events.Event]) -> list[str]:
    return [type(event).__name__ for event in found]


def test_a_watch_reports_each_change_once_in_order_and_ends_with_the_recommendation(url: str, tmp_path: Path):
    study = start_study(url)
    first = start_trial(study, rank=16)
    watcher = StudyWatcher(url, "demo")

    opening = watcher.poll()
    assert kinds(opening) == ["StudyStarted", "TrialStarted"]
    started = opening[0]
    assert isinstance(started, events.StudyStarted)
    assert (started.total_trials, started.finished_trials, started.budget, started.spent_share) == (3, 0, None, None)
    assert "demo" in started.run_dir and "shared.db" in started.run_dir
    running = opening[1]
    assert isinstance(running, events.TrialStarted)
    assert (running.number, running.total, running.params["rank"]) == (0, 3, 16)
    assert watcher.poll() == [] and not watcher.finished  # nothing changed: nothing repeated

    end_trial(study, first, 1.2)
    second = start_trial(study, rank=256)
    changed = watcher.poll()
    assert kinds(changed) == [
        *["TrialProgress"] * 4,
        "TrialEvaluated",
        "TrialEvaluated",
        "TrialFinished",
        "TrialStarted",
    ]
    assert [(e.step, e.loss) for e in changed[:4]] == [(1, 2.4), (2, 2.2), (3, 2.1), (4, 2.0)]
    assert changed[5] == events.TrialEvaluated(0, 4, 1.2, 1.55, pytest.approx(1.3))
    ended = changed[6]
    assert isinstance(ended, events.TrialFinished)
    assert (ended.number, ended.state, ended.value, ended.reason) == (0, "COMPLETE", pytest.approx(1.3), None)
    assert ended.seconds >= 0 and ended.spent is None
    assert changed[7].number == 1 and changed[7].params["rank"] == 256

    end_trial(study, second, 1.4, pruned=True)
    third = start_trial(study, rank=16)
    end_trial(study, third, 1.1)  # started and ended between two looks: its start is reported before its end
    changed = watcher.poll()
    finished = [e for e in changed if isinstance(e, events.TrialFinished)]
    assert [(e.number, e.state) for e in finished] == [(1, "PRUNED"), (2, "COMPLETE")]
    assert finished[0].reason.startswith("pruned at step 2")
    third_events = kinds([e for e in changed if e.number == 2])
    assert third_events[0] == "TrialStarted" and third_events[-1] == "TrialFinished"
    assert [e.number for e in changed if isinstance(e, events.TrialStarted)] == [2]
    assert not watcher.finished and watcher.poll() == []

    stored = finish_study(study, tmp_path / "summary")
    closing = watcher.poll()
    assert kinds(closing) == ["StudyFinished"] and watcher.finished
    assert closing[0].recommendation.to_json() == stored
    assert closing[0].recommendation.trial == 2  # the lowest objective
    assert [(r.number, r.state) for r in closing[0].trials] == [(0, "COMPLETE"), (1, "PRUNED"), (2, "COMPLETE")]
    assert watcher.poll() == []  # the watch is over


def test_a_trial_is_reported_started_once_its_worker_has_drawn_its_whole_configuration(url: str):
    study = start_study(url)
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)
    trial.suggest_categorical("rank", [16])  # alpha and targets not drawn yet
    watcher = StudyWatcher(url, "demo")
    assert kinds(watcher.poll()) == ["StudyStarted"]
    trial.suggest_categorical("alpha_multiple", [2.0])
    trial.suggest_categorical("targets", ["all"])
    started = watcher.poll()
    assert kinds(started) == ["TrialStarted"] and started[0].params["targets"] == "all"


def test_a_watch_that_joins_late_counts_what_ended_and_replays_none_of_it(url: str, tmp_path: Path):
    study = start_study(url)
    for target in (1.3, 1.2):
        end_trial(study, start_trial(study), target)
    start_trial(study, rank=256)
    watcher = StudyWatcher(url, "demo")
    opening = watcher.poll()
    assert kinds(opening) == ["StudyStarted", "TrialStarted"]
    assert opening[0].finished_trials == 2 and opening[1].number == 2


def test_a_finished_study_is_reported_finished_on_the_first_look(url: str, tmp_path: Path):
    study = start_study(url)
    end_trial(study, start_trial(study), 1.2)
    finish_study(study, tmp_path / "summary")
    watcher = StudyWatcher(url, "demo")
    assert kinds(watcher.poll()) == ["StudyStarted", "StudyFinished"] and watcher.finished


def test_a_pick_scored_after_the_search_is_reported_scored_before_the_study_finishes(url: str, tmp_path: Path):
    study = start_study(url)
    end_trial(study, start_trial(study), 1.2)
    watcher = StudyWatcher(url, "demo")
    watcher.poll()
    figures = {"hellaswag": 0.4, "winogrande": 0.5, "arc_challenge": 0.3, "gsm8k": 0.12}
    scores = StudyScores(plan={"mode": "pick"}, base=figures, learning_benchmark="gsm8k", trials={"0": figures})
    stored = finish_study(study, tmp_path / "summary")
    StudyState(study).recommendation = {**stored, "scores": scores.to_json()}
    scored, finished = watcher.poll()
    assert scored == events.TrialScored(0, figures, pytest.approx(0.4), 0.12)
    assert isinstance(finished, events.StudyFinished) and finished.recommendation.scores == scores


def test_a_trial_whose_worker_died_ends_as_interrupted_and_is_not_replayed(url: str):
    study = start_study(url)
    doomed = start_trial(study)
    watcher = StudyWatcher(url, "demo")
    watcher.poll()
    study.tell(doomed, state=OptunaState.FAIL)  # as the heartbeat fails a dead worker's trial: no reason recorded
    killed_unseen = study.ask()  # never seen running by the watch
    study.tell(killed_unseen, state=OptunaState.FAIL)
    changed = watcher.poll()
    assert changed == [events.TrialFinished(0, "FAIL", None, INTERRUPTED, pytest.approx(changed[0].seconds))]
    assert watcher.poll() == []


def test_a_budgeted_study_reports_what_it_has_spent(url: str):
    budgeted = StudySettings(**{**SETTINGS.__dict__, "search_budget": StudyBudget(tokens=40_000)})
    study = start_study(url, settings=budgeted)
    trial = start_trial(study)
    watcher = StudyWatcher(url, "demo")
    opening = watcher.poll()
    assert opening[0].budget == "0 of 40,000 training tokens used, 40,000 left" and opening[0].spent_share == 0
    assert opening[1].total == 0  # a budget, not a count, ends the study
    end_trial(study, trial, 1.2)
    ended = watcher.poll()[-1]
    tokens = 4 * budgeted.budget.tokens_per_step()
    assert ended.spent == f"{tokens:,} of 40,000 training tokens used, {40_000 - tokens:,} left"
    assert math.isclose(ended.spent_share, tokens / 40_000)


def test_an_unknown_study_or_one_the_advisor_did_not_start_is_one_line(url: str, tmp_path: Path):
    start_study(url)
    with pytest.raises(AdvisorError, match=r"no study 'nope' in .*: it holds 'demo'"):
        open_watched(url, "nope")
    optuna.create_study(study_name="plain", storage=url)
    with pytest.raises(AdvisorError, match=r"study 'plain' in .* was not started by the advisor"):
        StudyWatcher(url, "plain")
    with pytest.raises(AdvisorError, match=r"no study storage at .*x\.db \(no such file\)"):
        open_watched(f"sqlite:///{tmp_path / 'missing' / 'x.db'}", "demo")
    assert open_watched(url, "demo") == SETTINGS


def test_a_storage_url_is_shown_without_its_password_and_a_study_name_makes_a_directory_name():
    shown = shown_url("postgresql+psycopg://advisor:s3cret@db.example:5432/studies")
    assert "s3cret" not in shown and "advisor" in shown and "db.example:5432/studies" in shown
    assert shown_url("sqlite:////tmp/watch.db") == "sqlite:////tmp/watch.db"
    assert run_dir_name("advisor:/home/me/runs/math") == "advisor_home_me_runs_math"
    assert run_dir_name("demo") == "demo" and run_dir_name("///") == "study"
