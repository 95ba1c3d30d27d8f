"""The learning-rate range test on a tiny random Llama: it finds a range, counts its tokens, leaves the model."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tuner.data.prepare import prepare_study_data  # noqa: E402
from tuner.models.load import load_model, load_tokenizer, resolve_model  # noqa: E402
from tuner.settings import DataSettings, LoraSettings, Packing  # noqa: E402
from tuner.study.range_test import RangeTestPlan, run_range_test  # noqa: E402
from tuner.training.runtime import pick_runtime  # noqa: E402


@pytest.fixture(scope="module")
def setup(tiny_model: Path, data_dir: Path):
    source = resolve_model(str(tiny_model))
    data = prepare_study_data(DataSettings("math"), Packing(128, 2), load_tokenizer(source), data_dir)
    runtime = pick_runtime()
    return load_model(source, runtime.device, runtime.dtype), data, runtime


def test_the_range_test_rises_until_the_loss_diverges_and_leaves_the_model_as_it_was(setup):
    model, data, runtime = setup
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # The tiny random model's loss is noisy and barely moves: any rise of 1 % counts as divergence here.
    plan = RangeTestPlan(start=1e-4, end=0.9, steps=30, diverge_factor=1.01)
    found = run_range_test(model, data, LoraSettings(16, 32.0, "all"), runtime, plan)
    steps = len(found.curve)
    assert 4 <= steps <= 30 and found.tokens == steps * 128  # one row of 128 tokens per step
    rates = [point[0] for point in found.curve]
    assert rates == sorted(rates) and rates[0] == pytest.approx(1e-4)
    assert found.diverged_rate is not None and steps < 30  # a rate near 1 diverges, and the test stops there
    assert plan.start <= found.best_rate < found.diverged_rate
    assert found.low < found.high <= found.diverged_rate / 2
    smoothed = [point[2] for point in found.curve]
    assert found.conclusive == (min(smoothed) <= 0.98 * smoothed[0])
    assert found.adapter["rank"] == 16
    after = dict(model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in before)
