"""The trial runner on a tiny random Llama: it learns, it stops diverging runs, it leaves the base model as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tuner.data import prepare_study_data  # noqa: E402
from tuner.models import load_model, load_tokenizer, resolve_model  # noqa: E402
from tuner.runtime import pick_runtime  # noqa: E402
from tuner.settings import DataSettings, LoraSettings, TrainBudget  # noqa: E402
from tuner.trial import heldout_loss, row_order, run_trial  # noqa: E402

BUDGET = TrainBudget(train_tokens=8192, batch_size=4, seq_len=128, evaluations=2)


@pytest.fixture(scope="module")
def setup(tiny_model: Path, data_dir: Path):
    source = resolve_model(str(tiny_model))
    data = prepare_study_data(DataSettings("math"), BUDGET.packing(), load_tokenizer(source), data_dir)
    runtime = pick_runtime()
    model = load_model(source, runtime.device, runtime.dtype)
    start = heldout_loss(model, data.heldout, 4, runtime)
    return model, data, runtime, start


def test_row_order_covers_every_row_each_epoch():
    order = row_order(5, 12, seed=3)
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))
    assert order == row_order(5, 12, seed=3) != row_order(5, 12, seed=4)


def test_a_trial_learns_and_reports_each_step_and_evaluation(setup):
    model, data, runtime, start = setup
    steps, evals = [], []
    result = run_trial(
        model,
        data,
        LoraSettings(16, 32, "all"),
        1e-1,
        BUDGET,
        runtime,
        start_loss=start,
        on_step=lambda s, loss, tps: steps.append(s),
        on_eval=lambda s, t, g: evals.append(s),
    )
    assert result.stopped_reason is None
    assert steps == list(range(1, 17)) and evals == [8, 16]
    assert result.train_tokens == 16 * 4 * 128 and result.tokens_per_second() > 0
    final_target = result.evaluations[-1][1]
    assert final_target < start - 0.5  # a random model quickly learns GSM8K token statistics


def test_the_base_model_is_untouched_after_a_trial(setup):
    model, data, runtime, start = setup
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    run_trial(model, data, LoraSettings(8, 16, "attention"), 1e-2, BUDGET, runtime, start_loss=start)
    assert {name for name, _ in model.named_parameters()} == set(before)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert heldout_loss(model, data.heldout, 4, runtime) == pytest.approx(start, abs=1e-5)


def test_a_diverging_trial_stops_with_its_reason(setup):
    model, data, runtime, start = setup
    result = run_trial(model, data, LoraSettings(64, 256, "all"), 50.0, BUDGET, runtime, start_loss=start)
    assert result.stopped_reason is not None and result.stopped_reason.startswith("diverged:")
    assert len(result.train_curve) < BUDGET.steps()


def test_on_eval_can_stop_a_trial(setup):
    model, data, runtime, start = setup
    result = run_trial(
        model,
        data,
        LoraSettings(8, 16, "mlp"),
        1e-3,
        BUDGET,
        runtime,
        start_loss=start,
        on_eval=lambda step, target, general: f"pruned at step {step}",
    )
    assert result.stopped_reason == "pruned at step 8" and len(result.evaluations) == 1


def test_freed_memory_can_be_returned_to_the_kernel_on_glibc():
    import subprocess
    import sys

    probe = "from tuner.runtime import return_freed_memory; print(return_freed_memory())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"  # mallopt(M_MMAP_THRESHOLD) accepted; run apart: it is process-wide
