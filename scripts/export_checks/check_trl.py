"""TRL's check: trl-sft.yaml parsed by `trl sft`'s own parser (TrlParser over ScriptArguments, SFTConfig, ModelConfig
and DatasetMixtureConfig, unknown keys refused), the LoRA config built by TRL's get_peft_config, and the values
read back from those objects. See common.py for the protocol."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any
from unittest import mock

import common
import torch
from trl import get_peft_config
from trl.scripts.sft import make_parser

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}


def targets(modules: Any) -> str:
    """'all', 'attention' or 'mlp' from PEFT's target_modules ('all-linear' or a set of names)."""
    if modules == "all-linear":
        return "all"
    names = set(modules)
    return {frozenset(ATTENTION | MLP): "all", frozenset(ATTENTION): "attention", frozenset(MLP): "mlp"}.get(
        frozenset(names), f"other: {sorted(names)}"
    )


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    with ExitStack() as stack:
        if job["expected"]["hardware"] == "gpu" and not torch.cuda.is_available():
            stack.enter_context(mock.patch("transformers.training_args.is_torch_bf16_gpu_available", lambda: True))
            notes.append("no GPU here: transformers' bf16-GPU check patched to pass")
        parser = make_parser()
        _, training, model, _ = parser.parse_args_and_config(["--config", job["file"]], fail_with_unknown_args=True)
    lora = get_peft_config(model)
    steps = 1_000_000
    if training.bf16 and model.dtype == "bfloat16":
        precision = "bf16"
    elif not training.bf16 and not training.fp16 and model.dtype in (None, "float32"):
        precision = "fp32"
    else:
        precision = f"mixed (bf16 {training.bf16}, fp16 {training.fp16}, dtype {model.dtype})"
    if training.use_cpu and training.device.type != "cpu":
        notes.append(f"use_cpu set but the device is {training.device}")
    got = {
        "learning_rate": training.learning_rate,
        "epochs": training.num_train_epochs,
        "batch_size": training.per_device_train_batch_size * training.gradient_accumulation_steps,
        "seq_len": training.max_length,
        "warmup_ratio": training.get_warmup_steps(steps) / steps,
        "rank": lora.r,
        "alpha": float(lora.lora_alpha),
        "dropout": lora.lora_dropout,
        "targets": targets(lora.target_modules),
        "precision": precision,
        "hardware": "cpu" if training.use_cpu else "gpu",
        "gradient_checkpointing": training.gradient_checkpointing,
    }
    if model.attn_implementation != "sdpa":
        notes.append(f"attention: {model.attn_implementation}")
    return got, notes


if __name__ == "__main__":
    common.run(check)
