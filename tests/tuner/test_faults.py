"""Fault injection on a tiny study: killed at each point that matters, stopped by SIGTERM, or out of disk, then
run again with the same command, it recommends what the uninterrupted study recommends, with the same objective
values to 1e-6, and every trial that failed has its record."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.conftest import REPO, tune_command

OPTIONS = ["--trials", "3", "--trial-tokens", "4096", "--batch-size", "2", "--seq-len", "128", "--score-items", "0"]

# Runs `advisor ARGV` with one fault injected: the process dies (SIGKILL), is told to stop (SIGTERM) or finds its
# disk full at POINT, in trial number TARGET where the point is inside a trial.
INJECTED = r"""
import errno, os, signal, sys
point, target, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def die():
    os.kill(os.getpid(), signal.SIGTERM if point == "sigterm-mid-trial" else signal.SIGKILL)

if point == "range-test":
    import tuner.study.range_test as module
    original_range_test = module.run_range_test
    def run_range_test(*args, **kwargs):
        original_range_test(*args, **kwargs)  # measured, and killed before the study stores it
        die()
    module.run_range_test = run_range_test
elif point in ("after-rung", "sigterm-mid-trial"):
    import optuna
    original_should_prune = optuna.trial.Trial.should_prune
    def should_prune(self):
        pruned = original_should_prune(self)  # the rung's value is stored: the trial dies past it
        if self.number == target:
            die()
        return pruned
    optuna.trial.Trial.should_prune = should_prune
elif point == "between-trials":
    import tuner.study.loop as module
    original_run_claimed = module.run_claimed
    def run_claimed(study, trial, *args, **kwargs):
        ended = original_run_claimed(study, trial, *args, **kwargs)
        if ended.number == target:
            die()
        return ended
    module.run_claimed = run_claimed
elif point == "recommendation":
    import tuner.study.summarise as module
    original_write_json = module.write_json
    def write_json(path, payload):
        if path.name == "recommendation.json":
            path.write_text('{"half": ')  # half written, then killed
            die()
        original_write_json(path, payload)
    module.write_json = write_json
elif point == "disk-full":
    import peft
    def save_pretrained(self, directory, *args, **kwargs):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "adapter_model.safetensors"), "wb") as handle:
            handle.write(b"\0" * 1024)  # part of the adapter, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(directory, "adapter_model.safetensors"))
    peft.PeftModel.save_pretrained = save_pretrained

from advisor.cli import main
sys.exit(main(argv))
"""


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


def tune(
    model: Path, data_dir: Path, run_dir: Path, fault: tuple[str, int] | None = None
) -> subprocess.CompletedProcess:
    """`advisor tune` on the tiny model as a subprocess, with a fault injected where one is given."""
    command = tune_command(model, data_dir, run_dir, *OPTIONS)
    if fault is not None:
        argv = command[command.index("tune") :]
        command = [sys.executable, "-c", INJECTED, fault[0], str(fault[1]), *argv]
    return subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=600, cwd=REPO)


def outcome(run_dir: Path) -> tuple[dict, dict[int, tuple]]:
    """The pick (rate, rank, alpha, targets, objective, slot) and each trial that ended with results, by slot."""
    recommendation = json.loads((run_dir / "recommendation.json").read_text())
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "trials").glob("trial_*.json"))]
    slots = {r["number"]: r["slot"] for r in records}
    pick = {key: recommendation[key] for key in ("learning_rate", "rank", "alpha", "target_modules")}
    pick["value"] = recommendation["objective"]["value"]
    pick["slot"] = slots[recommendation["trial"]]
    trials = {
        r["slot"]: (r["state"], r["params"], r["value"], r["intermediate_values"])
        for r in records
        if r["state"] != "FAIL"
    }
    return pick, trials


def assert_same(resumed: tuple[dict, dict[int, tuple]], uninterrupted: tuple[dict, dict[int, tuple]]) -> None:
    (pick, trials), (want_pick, want_trials) = resumed, uninterrupted
    assert {k: v for k, v in pick.items() if k != "value"} == {k: v for k, v in want_pick.items() if k != "value"}
    assert pick["value"] == pytest.approx(want_pick["value"], abs=1e-6)
    assert sorted(trials) == sorted(want_trials)
    for slot, (state, params, value, rungs) in trials.items():
        want_state, want_params, want_value, want_rungs = want_trials[slot]
        assert (state, params) == (want_state, want_params), f"slot {slot}"
        assert (value is None) == (want_value is None) and value == pytest.approx(want_value, abs=1e-6)
        assert rungs.keys() == want_rungs.keys()
        assert all(rungs[step] == pytest.approx(want_rungs[step], abs=1e-6) for step in rungs)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, data_dir, tmp_path_factory) -> tuple[dict, dict[int, tuple]]:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = tune(tiny_model, data_dir, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    found = outcome(run_dir)
    assert len(found[1]) == 3
    assert not list(run_dir.glob(".study.db.*"))  # the study's locks leave no files behind
    return found


def failed_records(run_dir: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "trials").glob("trial_*.json"))]
    return [r for r in records if r["state"] == "FAIL"]


@pytest.mark.parametrize(
    ("point", "target", "interrupts_a_trial"),
    [
        ("range-test", 0, False),
        ("after-rung", 0, True),  # the first trial, past its first rung: its rung must not prune the others
        ("after-rung", 1, True),
        ("between-trials", 1, False),
        ("recommendation", 0, False),
    ],
)
def test_a_study_killed_anywhere_resumes_to_the_uninterrupted_recommendation(
    tiny_model, data_dir, tmp_path, uninterrupted, point, target, interrupts_a_trial
):
    run_dir = tmp_path / "run"
    killed = tune(tiny_model, data_dir, run_dir, (point, target))
    assert killed.returncode == -9, killed.stderr[-3000:]

    resumed = tune(tiny_model, data_dir, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same(outcome(run_dir), uninterrupted)
    failed = failed_records(run_dir)
    recommendation = json.loads((run_dir / "recommendation.json").read_text())
    if interrupts_a_trial:  # the killed trial has its record and reason, and the recommendation counts it
        assert [r["number"] for r in failed] == [target]
        assert failed[0]["reason"].startswith("interrupted") and failed[0]["slot"] == target
        assert recommendation["trials"]["fail"] == 1
    else:
        assert failed == [] and recommendation["trials"]["fail"] == 0
    assert not list(run_dir.glob("**/*.partial")) and not list(run_dir.glob("**/.*.tmp"))


def test_sigterm_stops_the_running_trial_which_runs_again_on_resume(tiny_model, data_dir, tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    stopped = tune(tiny_model, data_dir, run_dir, ("sigterm-mid-trial", 1))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1].startswith("advisor: stopped (SIGTERM)")
    import optuna

    study = optuna.load_study(study_name="advisor", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert [t.state.name for t in study.trials if t.number == 1] == ["FAIL"]  # not left RUNNING
    assert [r["number"] for r in failed_records(run_dir)] == [1]  # its record, written as it stopped

    resumed = tune(tiny_model, data_dir, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same(outcome(run_dir), uninterrupted)
    assert [r["number"] for r in failed_records(run_dir)] == [1]


@contextlib.contextmanager
def tiny_disk(directory: Path, size: str) -> Iterator[bool]:
    """A tmpfs of `size` mounted at `directory` where this process may mount one (yields True), else nothing."""
    directory.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)]
    mounted = subprocess.run(mount, capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def test_a_real_full_disk_is_one_line_and_the_study_resumes_once_there_is_room(
    tiny_model, data_dir, tmp_path, uninterrupted
):
    disk = tmp_path / "disk"
    with tiny_disk(disk, "160k") as mounted:  # the study's database fits, its first finalist's adapter does not
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (not root): the simulated full disk above stands for it")
        full = tune(tiny_model, data_dir, disk / "run")
        assert full.returncode == 2, full.stderr[-3000:]
        assert "Traceback" not in full.stderr
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("advisor: error: cannot write ") and "no space left on device" in last
        assert not list(disk.glob("**/*.partial")) and not list(disk.glob("**/.*.tmp"))

        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # space freed
        resumed = tune(tiny_model, data_dir, disk / "run")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_same(outcome(disk / "run"), uninterrupted)


def test_a_full_run_on_a_full_disk_stops_in_one_line_and_resumes_from_its_last_whole_checkpoint(
    tiny_model, data_dir, tmp_path
):
    from tests.tuner.fullrun.test_train import tiny_run
    from tuner.errors import AdvisorError
    from tuner.fullrun.train import RunOptions, train_run

    disk = tmp_path / "disk"
    with tiny_disk(disk, "300k") as mounted:  # checkpoint-4 fits, checkpoint-8 does not
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (not root)")
        options = RunOptions(save_steps=4)
        with pytest.raises(AdvisorError) as stopped:
            train_run(tiny_run(tiny_model), disk / "run", data_dir=data_dir, options=options)
        assert str(stopped.value) == (
            f"training in {disk / 'run'} stopped: no space left on device; the same command resumes from checkpoint-4"
        )
        assert [p.name for p in (disk / "run" / "checkpoints").iterdir()] == ["checkpoint-4"]  # the broken one went

        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        resumed = train_run(tiny_run(tiny_model), disk / "run", data_dir=data_dir, options=options).to_json()
        assert resumed["training"]["resumed_from"] == "checkpoint-4" and resumed["training"]["steps"] == 20


def test_fault_causes_are_named():
    from tuner.faults import fault_line

    full = OSError(errno.ENOSPC, "No space left on device", "/x/adapter.safetensors")
    assert fault_line(full, "cannot write /x") == "cannot write /x: no space left on device (/x/adapter.safetensors)"
    assert fault_line(RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")) == (
        "no space left on device"
    )
    assert fault_line(PermissionError(errno.EACCES, "Permission denied", "/proc/x"), "cannot write /proc/x") == (
        "cannot write /proc/x: permission denied"
    )
    assert fault_line(ValueError("rank must be positive")) is None
