"""The fused LoRA forward gives peft's outputs and gradients, and leaves what it does not cover to peft."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tuner.models.load import load_model, resolve_model  # noqa: E402
from tuner.settings import LoraSettings  # noqa: E402
from tuner.training.fused_lora import fuse_lora_forwards  # noqa: E402
from tuner.training.runtime import pick_runtime  # noqa: E402
from tuner.training.trial import peft_config  # noqa: E402


@pytest.fixture(scope="module")
def model(tiny_model: Path):
    runtime = pick_runtime()
    return load_model(resolve_model(str(tiny_model)), runtime.device, runtime.dtype)


def _adapted(model, lora: LoraSettings):
    from peft import get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, peft_config(lora))
    for module in peft_model.modules():  # B = 0 at initialisation would hide the adapter's path
        if hasattr(module, "lora_B"):
            for weight in module.lora_B.values():
                torch.nn.init.normal_(weight.weight, std=0.1)
    return peft_model


def _loss_and_grads(peft_model, input_ids):
    peft_model.zero_grad(set_to_none=True)
    loss = peft_model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in peft_model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def test_the_fused_forward_gives_peft_s_loss_and_gradients(model):
    input_ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base_logits = model(input_ids=input_ids).logits
    peft_model = _adapted(model, LoraSettings(4, 8, "all"))
    try:
        peft_model.train()
        expected, expected_grads = _loss_and_grads(peft_model, input_ids)
        assert fuse_lora_forwards(peft_model) == 2 * 7  # every linear layer of both blocks
        ours, our_grads = _loss_and_grads(peft_model, input_ids)
        assert ours == pytest.approx(expected, rel=1e-6)
        assert our_grads.keys() == expected_grads.keys() and our_grads
        for name, grad in expected_grads.items():
            torch.testing.assert_close(our_grads[name], grad, rtol=1e-5, atol=1e-7)
        # Adapters switched off (as the base model is scored): peft's own path, the base model's output.
        with torch.no_grad(), peft_model.disable_adapter():
            torch.testing.assert_close(peft_model(input_ids=input_ids).logits, base_logits)
    finally:
        peft_model.unload()


def test_variants_keep_peft_s_forward(model):
    peft_model = _adapted(model, LoraSettings(4, 8, "all", variant="dora"))
    try:
        assert fuse_lora_forwards(peft_model) == 0
    finally:
        peft_model.unload()
