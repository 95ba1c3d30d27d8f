"""One study, many workers: `advisor tune --workers N` and processes joining through PostgreSQL with --study.

The workers are real processes on a real PostgreSQL server (.ci/postgres starts one in CI), training the tiny model.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from advisor.commands.workers import WORKER_FLAG, worker_argv, worker_environments
from tests.conftest import run_cli, tune_command
from tuner.defaults import CONFIRM_TRIALS
from tuner.records import Recommendation, TrialRecord
from tuner.study.confirm import confirm_choice
from tuner.study.state import StudyState, driver_url
from tuner.study.trials import finished_trials, trial_record

GIVE_STORAGE = "give its --storage URL too"
TRIAL = ["--trial-tokens", "4096", "--batch-size", "2", "--seq-len", "128"]


def test_worker_arguments_drop_workers_and_json():
    argv = ["--task", "math", "--workers", "3", "--json", "--workers=2", "--trials", "9"]
    assert worker_argv(argv) == ["--task", "math", "--trials", "9", WORKER_FLAG]


def test_each_gpu_gets_a_worker_and_cpus_share_the_cores():
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_environments(3, ["0", "1"], 16)] == ["0", "1", "0"]
    cpu = worker_environments(4, [], 16)
    assert all(e["OMP_NUM_THREADS"] == "4" and e["CUDA_VISIBLE_DEVICES"] == "" for e in cpu)
    assert worker_environments(4, [], 2)[0]["OMP_NUM_THREADS"] == "1"


@functools.cache
def storage_at(url: str) -> optuna.storages.RDBStorage:
    """One storage per URL for the test's own looks: polling with a new one each time would open a connection pool
    each time, past the server's connection limit."""
    return optuna.storages.RDBStorage(driver_url(url))


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_at(url))


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "ADVISOR_HEARTBEAT_SECONDS": "1", **extra}


def tune_ok(command: list[str]) -> subprocess.CompletedProcess[str]:
    """`advisor tune` run to its end with a one-second heartbeat; it must succeed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def check_finished(study: optuna.Study, trials: int, run_dir: Path) -> Recommendation:
    """The study ended with `trials` trials, no configuration twice, and the recommendation (in the storage and
    the run directory alike) is the best trial as the confirm stage ranks them."""
    ended = finished_trials(study)
    assert len(ended) == trials
    params = [json.dumps(t.params, sort_keys=True) for t in ended]
    assert len(set(params)) == len(params), "a configuration was trained twice"
    stored = StudyState(study).recommendation
    written = json.loads((run_dir / "recommendation.json").read_text())
    assert stored is not None and {**stored, "run_dir": None} == {**written, "run_dir": None}
    recommendation = Recommendation.from_json(written)
    records = [TrialRecord.from_json(json.loads(p.read_text())) for p in sorted((run_dir / "trials").glob("*.json"))]
    complete = sorted((r for r in records if r.state == "COMPLETE"), key=lambda r: r.value)
    assert recommendation.trial in [r.number for r in complete[:CONFIRM_TRIALS]]
    base_general = recommendation.objective.base_confirm_general_loss
    choice = confirm_choice(complete, 0.5, base_general)
    assert recommendation.trial == (choice.pick if choice is not None else complete[0].number)
    return recommendation


def test_three_workers_share_a_nine_trial_study(tiny_model, data_dir, tmp_path, postgres_url):
    run_dir = tmp_path / "run"
    options = ["--trials", "9", *TRIAL, "--storage", postgres_url, "--study", "shared", "--workers", "3"]
    result = tune_ok(tune_command(tiny_model, data_dir, run_dir, *options, "--json"))
    study = load(postgres_url, "shared")
    recommendation = check_finished(study, 9, run_dir)
    assert json.loads(result.stdout)["trial"] == recommendation.trial
    workers = {t.user_attrs.get("worker") for t in finished_trials(study)}
    assert len(workers) >= 2, workers  # the trials were shared out
    assert StudyState(study).range_test is not None  # run once, by the first worker, under the set-up lock
    assert "starting 3 workers" in result.stderr and "worker 1:" in result.stderr
    # Every finalist was re-measured on the confirm rows by the worker that trained it.
    complete = sorted((t for t in finished_trials(study) if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert all(trial_record(t).confirm is not None for t in complete[:1])

    # The report rebuilds the run directory's files from the storage alone.
    code, _, err = run_cli_report(postgres_url, "shared", tmp_path / "report")
    assert code == 0, err
    reported = json.loads((tmp_path / "report" / "recommendation.json").read_text())
    assert {**reported, "run_dir": None} == {
        **json.loads((run_dir / "recommendation.json").read_text()),
        "run_dir": None,
    }
    assert len(list((tmp_path / "report" / "trials").glob("*.json"))) == 9
    assert "study 'shared': finished; trials of 9:" in err


def run_cli_report(url: str, name: str, out: Path) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "advisor.cli", "report", "--storage", url, "--study", name, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


def test_a_worker_killed_mid_trial_has_its_trial_run_again(tiny_model, data_dir, tmp_path, postgres_url):
    run_dir = tmp_path / "run"
    options = ["--trials", "9", "--trial-tokens", "16384", "--batch-size", "2", "--seq-len", "128"]
    options += ["--storage", postgres_url, "--study", "killed", "--workers", "3", "--no-range-test"]
    parent = subprocess.Popen(
        tune_command(tiny_model, data_dir, run_dir, *options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.05)
        try:
            study = load(postgres_url, "killed")
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker and trial.intermediate_values:  # mid-trial: it has reported a rung
                os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
                killed = trial.number
                break
    _, err = parent.communicate(timeout=600)
    assert killed is not None, "no trial was caught running"
    assert parent.returncode == 0, err[-3000:]
    study = load(postgres_url, "killed")
    dead = study.trials[killed]
    assert dead.state == optuna.trial.TrialState.FAIL and "failed_reason" not in dead.user_attrs
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].params == dead.params and retries[0].state.is_finished()
    assert retries[0].user_attrs["slot"] == dead.user_attrs["slot"]  # trained with the killed trial's seed
    recommendation = check_finished(study, 9, run_dir)
    assert "exited with code -9" in err
    # The killed trial has its record, with its reason, and the recommendation counts it.
    record = json.loads((run_dir / "trials" / f"trial_{killed:04d}.json").read_text())
    assert record["state"] == "FAIL" and record["reason"].startswith("interrupted")
    assert recommendation.trials["fail"] >= 1


def test_two_machines_with_their_own_run_directories_share_one_study(tiny_model, data_dir, tmp_path, postgres_url):
    # Trials of 16,384 tokens: long enough that both machines, started together, claim some.
    longer = ["--trial-tokens", "16384", "--batch-size", "2", "--seq-len", "128"]
    options = ["--trials", "6", *longer, "--storage", postgres_url, "--study", "two", "--no-range-test"]
    machines = [
        subprocess.Popen(
            tune_command(tiny_model, data_dir, tmp_path / name, *options),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(OMP_NUM_THREADS="1"),
        )
        for name in ("a", "b")
    ]
    for machine in machines:
        _, err = machine.communicate(timeout=600)
        assert machine.returncode == 0, err[-3000:]
    study = load(postgres_url, "two")
    first = check_finished(study, 6, tmp_path / "a")
    second = check_finished(study, 6, tmp_path / "b")
    assert (first.trial, first.learning_rate, first.rank) == (second.trial, second.learning_rate, second.rank)
    workers = {t.user_attrs.get("worker") for t in finished_trials(study)}
    assert len(workers) == 2  # both machines ran trials
    # The pick was scored once: the second summary found it stored.
    assert first.scores == second.scores


def test_joining_with_other_settings_is_one_line_and_touches_nothing(
    tiny_model, data_dir, tmp_path, postgres_url, capsys
):
    base = ["tune", "--task", "math", "--model", str(tiny_model), "--data-dir", str(data_dir), *TRIAL]
    shared = ["--storage", postgres_url, "--study", "s", "--no-range-test", "--score-items", "0"]
    code, _, err = run_cli(capsys, *base, "--trials", "1", "--out", str(tmp_path / "a"), *shared)
    assert code == 0, err
    before = [(t.number, t.state, dict(t.user_attrs)) for t in load(postgres_url, "s").trials]
    attrs = dict(load(postgres_url, "s").user_attrs)
    other = [a if a != "128" else "64" for a in base]  # another row length
    code, _, err = run_cli(capsys, *other, "--trials", "1", "--out", str(tmp_path / "b"), *shared)
    said = "advisor: error: study 's' was started with other settings (budget.seq_len 128 (this worker: 64)); "
    assert code == 2 and err == said + "join it with the same\n"
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b").exists()
    study = load(postgres_url, "s")
    assert [(t.number, t.state, dict(t.user_attrs)) for t in study.trials] == before and study.user_attrs == attrs


def test_joining_a_running_study_with_another_trial_count_is_refused(tiny_model, data_dir, tmp_path, postgres_url):
    from tuner.errors import AdvisorError
    from tuner.settings import DataSettings, StudySettings, TrainBudget

    settings = StudySettings(
        model=str(tiny_model), data=DataSettings("math"), trials=4, budget=TrainBudget(train_tokens=4096)
    )
    study = optuna.create_study(study_name="r", storage=driver_url(postgres_url))
    state = StudyState(study)
    state.start(settings)
    state.record_run(settings)
    study.ask()  # a worker is running a trial
    state.check_joining(settings, "study 'r'")  # the same settings join
    with pytest.raises(AdvisorError, match=r"study 'r' is running with --trials 4 \(this worker has 9\)"):
        state.check_joining(StudySettings(**{**settings.__dict__, "trials": 9}), "study 'r'")


def test_bad_shared_study_input_is_one_line(tiny_model, data_dir, tmp_path, capsys, postgres_url):
    base = ["tune", "--task", "math", "--model", str(tiny_model), "--data-dir", str(data_dir), "--out"]
    code, _, err = run_cli(capsys, *base, str(tmp_path / "x"), "--study", "s")
    assert (
        code == 2 and err == "advisor: error: --study names a study in a shared storage: give its --storage URL too\n"
    )
    unreachable = "postgresql://nobody@127.0.0.1:9/nothing?connect_timeout=2"
    code, _, err = run_cli(capsys, *base, str(tmp_path / "y"), "--storage", unreachable, "--study", "s")
    assert code == 2 and err.startswith("advisor: error: cannot open study storage") and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    code, _, err = run_cli(capsys, "report", "--storage", postgres_url, "--study", "nope", "--out", str(tmp_path / "r"))
    assert code == 2 and err == f"advisor: error: no study 'nope' in {postgres_url}: it holds no study\n"
    assert not (tmp_path / "r").exists()
    code, _, err = run_cli(capsys, "report", "--storage", unreachable, "--study", "s", "--out", str(tmp_path / "r"))
    assert code == 2 and err.startswith("advisor: error: cannot open study storage") and len(err.splitlines()) == 1


def test_a_pick_trained_on_another_machine_is_trained_again_to_be_scored(
    tiny_model, data_dir, tmp_path, postgres_url, capsys
):
    base = ["tune", "--task", "math", "--model", str(tiny_model), "--data-dir", str(data_dir), *TRIAL, "--trials", "2"]
    shared = ["--storage", postgres_url, "--study", "moved", "--no-range-test"]
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "a"), *shared)
    assert code == 0, err
    study = load(postgres_url, "moved")
    first = StudyState(study).pick_scores
    assert first is not None and "scores" in first
    # As if machine a had scored nothing: machine b, which never held the adapter, summarises.
    StudyState(study).pick_scores = None
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "b"), *shared)
    assert code == 0, err
    again = StudyState(load(postgres_url, "moved")).pick_scores
    assert again is not None and again["trial"] == first["trial"] and "scores" in again
    assert (tmp_path / "b" / "finalists" / f"trial_{first['trial']:04d}" / "adapter_config.json").is_file()
    assert not (tmp_path / "b" / "trials").exists() or len(list((tmp_path / "b" / "trials").glob("*.json"))) == 2


def test_three_workers_overspend_a_token_budget_by_no_more_than_the_trials_in_flight(
    tiny_model, data_dir, tmp_path, postgres_url
):
    from tuner.study.state import study_spent

    budget = 5 * 4096  # five whole trials of 4,096 tokens
    options = [*TRIAL, "--budget", str(budget), "--storage", postgres_url, "--study", "budget", "--workers", "3"]
    options += ["--no-range-test", "--score-items", "0"]
    tune_ok(tune_command(tiny_model, data_dir, tmp_path / "run", *options))
    study = load(postgres_url, "budget")
    spent = study_spent(study, 2 * 128)
    in_flight = 2 * 4096  # the two other workers' trials, at most, began before the last one ended
    assert budget // 2 < spent.tokens <= budget + in_flight
    ended = finished_trials(study)
    assert len({json.dumps(t.params, sort_keys=True) for t in ended}) == len(ended)


def test_two_workers_share_the_run_directorys_own_file(tiny_model, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    options = ["--trials", "4", *TRIAL, "--workers", "2", "--no-range-test", "--score-items", "0"]
    result = tune_ok(tune_command(tiny_model, data_dir, run_dir, *options))
    study = optuna.load_study(study_name="advisor", storage=f"sqlite:///{run_dir / 'study.db'}")
    check_finished(study, 4, run_dir)
    assert "starting 2 workers" in result.stderr
