"""PEFT's check: adapter_config.json loaded by PEFT's LoraConfig.from_pretrained and applied by get_peft_model to a
small randomly initialised Llama-style model; the values read back from the config and the adapted modules. The
PEFT export carries the adapter only (precision, device and schedule are the training loop's). See common.py."""

from __future__ import annotations

from typing import Any

import common
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    config = LoraConfig.from_pretrained(job["dir"])
    small = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    model = get_peft_model(LlamaForCausalLM(small), config)
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    ranks = {module.r["default"] for _, module in model.named_modules() if hasattr(module, "lora_A")}
    targets = {frozenset(ATTENTION | MLP): "all", frozenset(ATTENTION): "attention", frozenset(MLP): "mlp"}
    got = {
        "rank": ranks.pop() if len(ranks) == 1 else f"several: {sorted(ranks)}",
        "alpha": float(config.lora_alpha),
        "dropout": config.lora_dropout,
        "targets": targets.get(frozenset(adapted), f"other: {sorted(adapted)}"),
    }
    return got, [f"{len(adapted)} module types adapted in a 2-layer model"]


if __name__ == "__main__":
    common.run(check)
