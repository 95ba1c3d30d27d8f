"""The trial runner on a tiny random Llama: it learns, it stops diverging runs, it leaves the base model as it was."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tuner.data.prepare import prepare_study_data  # noqa: E402
from tuner.defaults import LORAPLUS_LR_RATIO, VARIANTS  # noqa: E402
from tuner.models.load import load_model, load_tokenizer, resolve_model  # noqa: E402
from tuner.settings import DataSettings, LoraSettings, TrainBudget  # noqa: E402
from tuner.training.runtime import pick_runtime  # noqa: E402
from tuner.training.trial import (  # noqa: E402
    adapter_optimizer,
    batch_tensors,
    heldout_loss,
    peft_config,
    row_order,
    run_trial,
)

BUDGET = TrainBudget(train_tokens=8192, batch_size=4, seq_len=128, evaluations=2)
SHORT = TrainBudget(train_tokens=2048, batch_size=4, seq_len=128, evaluations=1)
"""Four steps, one evaluation at the end."""


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


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_saves_reloads_and_leaves_the_base_untouched(setup, tmp_path, variant):
    from peft import PeftModel

    model, data, runtime, start = setup
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    batch = batch_tensors(data.heldout, [0, 1], runtime.device)
    with torch.no_grad():
        base_logits = model(**batch, use_cache=False).logits
    trained: dict[str, object] = {}

    def save(peft_model, result):
        # What scoring gets: the trained adapter (PiSSA's as plain LoRA on the untouched base model).
        trained["heldout"] = heldout_loss(peft_model, data.heldout, 4, runtime)
        with torch.no_grad():
            trained["logits"] = peft_model(**batch, use_cache=False).logits
        peft_model.save_pretrained(tmp_path)

    lora = LoraSettings(8, 16, "all", variant=variant)
    result = run_trial(model, data, lora, 1e-2, SHORT, runtime, start_loss=start, on_trained=save)
    assert result.stopped_reason is None and len(result.train_curve) == 4
    assert all(math.isfinite(loss) for _, loss in result.train_curve)
    assert trained["heldout"] == pytest.approx(result.evaluations[-1][1], abs=1e-5)  # the model that trained
    assert not torch.allclose(trained["logits"], base_logits)  # it learned something

    def base_untouched():
        state = model.state_dict()
        return state.keys() == before.keys() and all(torch.equal(state[name], before[name]) for name in before)

    assert base_untouched()
    reloaded = PeftModel.from_pretrained(model, tmp_path)
    try:
        with torch.no_grad():
            # peft's own forward against the trial's fused one (training.fused_lora): the same sum in another order
            torch.testing.assert_close(
                reloaded(**batch, use_cache=False).logits, trained["logits"], rtol=1e-4, atol=1e-4
            )
    finally:
        reloaded.unload()
    assert base_untouched()


def test_pissa_saves_plain_lora_of_twice_the_rank(setup, tmp_path):
    import json

    model, data, runtime, start = setup
    lora = LoraSettings(8, 16, "attention", variant="pissa")
    run_trial(
        model, data, lora, 1e-2, SHORT, runtime, start_loss=start, on_trained=lambda m, r: m.save_pretrained(tmp_path)
    )
    config = json.loads((tmp_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert (config["r"], config["lora_alpha"], config["init_lora_weights"]) == (16, 32, True)


def test_the_optimizer_is_adamw_without_weight_decay_and_loraplus_trains_b_faster(setup):
    from peft import get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    model, *_ = setup
    for variant in ("lora", "loraplus"):
        lora = LoraSettings(8, 16, "attention", variant=variant)
        peft_model = get_peft_model(model, peft_config(lora))
        try:
            optimizer = adapter_optimizer(peft_model, lora, 1e-3)
            scheduler = get_cosine_schedule_with_warmup(optimizer, 2, 10)
            for _ in range(3):
                optimizer.step()
                scheduler.step()
            names = {id(p): name for name, p in peft_model.named_parameters()}
            rates = {
                names[id(p)]: (group["lr"], group["weight_decay"])
                for group in optimizer.param_groups
                for p in group["params"]
            }
            assert isinstance(optimizer, torch.optim.AdamW)
            assert set(rates) == {name for name, p in peft_model.named_parameters() if p.requires_grad}
            scale = scheduler.get_last_lr()[0] / 1e-3  # the schedule scales every group alike
            for name, (rate, decay) in rates.items():
                b_rate = LORAPLUS_LR_RATIO if variant == "loraplus" and "lora_B" in name else 1
                assert rate == pytest.approx(1e-3 * scale * b_rate) and decay == 0.0
        finally:
            peft_model.unload()


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

    probe = "from tuner.training.runtime import return_freed_memory; print(return_freed_memory())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"  # mallopt(M_MMAP_THRESHOLD) accepted; run apart: it is process-wide


def test_a_full_fine_tuning_trial_trains_every_weight_and_puts_the_base_back(setup):
    model, data, runtime, start = setup
    before = {name: value.clone() for name, value in model.state_dict().items()}
    seen: list[int] = []

    def check_weights(trained, result) -> None:
        changed = [n for n, v in trained.state_dict().items() if not torch.equal(v, before[n])]
        seen.append(len(changed))

    result = run_trial(model, data, None, 1e-3, SHORT, runtime, start_loss=start, on_trained=check_weights)
    assert result.stopped_reason is None and len(result.train_curve) == 4
    assert result.evaluations[-1][1] < start  # the held-out loss falls from the base model's
    assert seen == [len(before)]  # every weight moved, embeddings and norms included
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert not any(p.requires_grad for p in model.parameters())
    assert heldout_loss(model, data.heldout, 4, runtime) == pytest.approx(start, abs=1e-6)


def test_the_loss_at_labelled_positions_only_equals_the_models_own_with_its_gradients(setup):
    import torch
    from peft import get_peft_model

    from tuner.settings import LoraSettings
    from tuner.training.trial import batch_tensors, peft_config, training_loss

    model, data, runtime, _ = setup
    torch.manual_seed(0)
    peft_model = get_peft_model(model, peft_config(LoraSettings(4, 8, "all")))
    try:
        for module in peft_model.modules():  # B = 0 at initialisation would leave A without gradient
            if hasattr(module, "lora_B"):
                for weight in module.lora_B.values():
                    torch.nn.init.normal_(weight.weight, std=0.1)
        batch = batch_tensors(data.train, [0, 1], runtime.device)
        assert (batch["labels"] == -100).any(), "the rows must hold prompt positions for this to test anything"
        grads = []
        for loss_of in (lambda: peft_model(**batch, use_cache=False).loss, lambda: training_loss(peft_model, batch)):
            peft_model.zero_grad(set_to_none=True)
            loss = loss_of()
            loss.backward()
            grads.append(
                (float(loss), {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None})
            )
        (full, full_grads), (ours, our_grads) = grads
        assert ours == pytest.approx(full, rel=1e-5)
        assert full_grads.keys() == our_grads.keys() and full_grads
        for name, grad in full_grads.items():
            torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6)
    finally:
        peft_model.unload()


def test_gradient_checkpointing_trains_to_the_same_losses(setup):
    model, data, runtime, start = setup
    lora = LoraSettings(16, 32, "all")
    plain = run_trial(model, data, lora, 1e-2, BUDGET, runtime, start_loss=start)
    recomputed = run_trial(model, data, lora, 1e-2, BUDGET, runtime, start_loss=start, gradient_checkpointing=True)
    assert [s for s, _ in recomputed.train_curve] == [s for s, _ in plain.train_curve]
    for (_, expected), (_, loss) in zip(plain.train_curve, recomputed.train_curve, strict=True):
        assert loss == pytest.approx(expected, abs=1e-4)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())  # off for the next trial
