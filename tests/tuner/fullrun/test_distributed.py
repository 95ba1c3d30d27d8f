"""`advisor train --nproc 2`: two CPU processes over gloo under torch's launcher give the one-process run's losses,
and a rank killed with SIGKILL stops the run with one line; the same command resumes to the uninterrupted weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tuner.errors import AdvisorError
from tuner.fullrun.distributed import Launch, StepOrder


def train_command(model: Path, data_dir: Path, out: Path, *options: str) -> list[str]:
    """Two epochs of 6 steps: 22 rows of GSM8K at 64 tokens, batch 4 (two rows per rank; each epoch's last step has
    2 rows, so the second rank's part is padding), checkpoints every 4 steps."""
    settings = ["--task", "math", "--epochs", "2", "--train-examples", "22", "--batch-size", "4", "--seq-len", "64"]
    settings += ["--learning-rate", "1e-2", "--no-eval", "--save-steps", "4"]
    where = ["--model", str(model), "--data-dir", str(data_dir), "--out", str(out)]
    return [sys.executable, "-m", "advisor.cli", "train", *where, *settings, *options]


def history(out: Path) -> dict:
    return json.loads((out / "adapter" / "training.json").read_text())


def adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(out / "adapter" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def one_process(tiny_model, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    done = subprocess.run(train_command(tiny_model, data_dir, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_two_processes_give_the_one_process_losses_and_weights(one_process, tiny_model, data_dir, tmp_path):
    import torch

    out = tmp_path / "two"
    done = subprocess.run(
        train_command(tiny_model, data_dir, out, "--nproc", "2"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = history(one_process), history(out)
    assert len(two["loss_curve"]) == len(one["loss_curve"]) == 12 and one["train_rows"] == 22
    for (step, expected), (same_step, loss) in zip(one["loss_curve"], two["loss_curve"], strict=True):
        assert step == same_step and loss == pytest.approx(expected, abs=1e-4)
    assert one["loss_curve"][-1][1] < one["loss_curve"][0][1]  # it trained
    for before, after in zip(one["epoch_losses"], two["epoch_losses"], strict=True):
        assert after["target_loss"] == pytest.approx(before["target_loss"], abs=1e-4)
    expected_weights, weights = adapter(one_process), adapter(out)
    assert set(weights) == set(expected_weights)
    assert all(torch.allclose(weights[k], expected_weights[k], atol=1e-4) for k in weights)
    # Rank 0 alone reported: one "training" line, one saved adapter
    assert done.stderr.count("training 2 epochs") == 1 and "[rank1]" not in done.stderr


def rank_process(launcher: int, rank: int) -> int | None:
    """The pid of the launcher's child training as `rank`, from its environment."""
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


def test_a_rank_killed_mid_run_stops_it_in_one_line_and_the_same_command_resumes(
    one_process, tiny_model, data_dir, tmp_path
):
    import torch

    out = tmp_path / "killed"
    command = train_command(tiny_model, data_dir, out, "--nproc", "2")
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "checkpoint-8" / "trainer_state.json").is_file():
        assert launcher.poll() is None and time.monotonic() < deadline, "the run never saved checkpoint 8"
        time.sleep(0.05)
    victim = rank_process(launcher.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("advisor: error: rank 1 of 2 was killed by signal 9, and the others were stopped")
    assert last.endswith("; the same command resumes from the last checkpoint") and "Traceback" not in stderr
    assert not (out / "adapter").exists()

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = history(out)
    assert resumed["resumed_from"] is not None and int(resumed["resumed_from"].split("-")[1]) >= 8
    # mid-way through the second epoch: the steps after the checkpoint take the uninterrupted run's rows
    for (step, expected), (_, loss) in zip(history(one_process)["loss_curve"], resumed["loss_curve"], strict=True):
        assert loss == pytest.approx(expected, abs=1e-4), step
    expected_weights, weights = adapter(one_process), adapter(out)
    assert all(torch.allclose(weights[k], expected_weights[k], atol=1e-4) for k in weights)


def test_the_step_order_is_accelerates_one_process_order_then_padding():
    import torch
    from accelerate.data_loader import SeedableRandomSampler

    order = StepOrder(rows=10, batch_size=4, seed=3)
    reference = SeedableRandomSampler(data_source=range(10), data_seed=3)
    for epoch in (0, 1):
        order.set_epoch(epoch)
        reference.set_epoch(epoch)
        drawn = list(order)
        assert drawn[:10] == list(reference) and drawn[10:] == [10, 11] and len(order) == 12
    assert torch.tensor(drawn[:10]).sort().values.tolist() == list(range(10))


@pytest.mark.parametrize(
    ("launch", "batch", "gpus", "cores", "message"),
    [
        (Launch(nproc=4), 4, 2, 16, "--nproc 4 is more processes than the 2 GPU"),
        (Launch(nproc=3), 4, 0, 2, "--nproc 3 CPU processes on 2 core"),
        (Launch(nproc=2), 3, 0, 2, "a batch of 3 rows does not split evenly over 2 processes"),
        (Launch(nproc=1, nnodes=2), 4, 1, 2, "--nnodes above 1 needs --rdzv-endpoint"),
        (Launch(nproc=1, nnodes=2, rdzv_endpoint="head"), 4, 1, 2, "HOST:PORT, got 'head'"),
    ],
)
def test_launches_this_machine_or_the_batch_cannot_run_are_refused(launch, batch, gpus, cores, message):
    with pytest.raises(AdvisorError, match=message):
        launch.check(batch, gpus, cores)
    Launch(nproc=2, nnodes=2, rdzv_endpoint="head:29500").check(4, 2, 16)  # fits
