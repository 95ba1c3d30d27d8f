"""TRL: trl-sft.yaml, run with `trl sft --config`.

Key names from TRL's `SFTConfig`, `ModelConfig` and `ScriptArguments` (what `trl sft` parses). `ModelConfig` has
`use_rslora` and `use_dora`, which `get_peft_config` passes to PEFT's LoraConfig; it has no PiSSA initialisation
and `trl sft` no LoRA+ optimizer, so those export as plain LoRA and the header says so.
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base
from advisor.presets import Preset


def trl_sections(preset: Preset) -> list[base.Section]:
    """trl-sft.yaml's sections: model, LoRA, data, training."""
    lora = preset.recipe.lora
    return [
        ("Model (trl.ModelConfig).", {"model_name_or_path": base.model_or_placeholder(preset)}),
        (
            "LoRA (trl.ModelConfig; get_peft_config builds peft's LoraConfig from these).",
            {
                "use_peft": True,
                "lora_r": lora.rank,
                "lora_alpha": base.whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_target_modules": lora.target_modules(),
                **({f"use_{lora.variant}": True} if lora.variant in ("rslora", "dora") else {}),
            },
        ),
        (
            "Data (trl.ScriptArguments, SFTConfig): fill in dataset_name. With packing, max_length is the row length.",
            {"dataset_name": base.DATA_PLACEHOLDER, "max_length": preset.recipe.seq_len, "packing": True},
        ),
        (
            "Training (trl.SFTConfig). transformers 5 dropped warmup_ratio: warmup_steps below 1 is the share of\n"
            "the steps (with transformers 4, write warmup_ratio instead). SFTConfig trains in bf16 by default;\n"
            "on a CPU add use_cpu: true.",
            {
                "output_dir": f"outputs/{preset.name}",
                "per_device_train_batch_size": preset.recipe.batch_size,
                "gradient_accumulation_steps": 1,
                "num_train_epochs": preset.recipe.epochs,
                "learning_rate": preset.recipe.learning_rate,
                "lr_scheduler_type": "cosine",
                "warmup_steps": preset.recipe.warmup_ratio,
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
            },
        ),
    ]


def read_trl(fields: dict[str, Any]) -> dict[str, Any]:
    """The carried values from trl-sft.yaml's fields (warmup_ratio, or warmup_steps below 1 as a share)."""
    warmup = base.as_float(fields.get("warmup_ratio", fields.get("warmup_steps", 0.0)))
    if warmup >= 1:
        raise TypeError(f"warmup_steps {warmup:g} is a step count; only a share (below 1) maps to a warm-up ratio")
    return {
        **base.adapter_values(
            fields["lora_r"],
            fields["lora_alpha"],
            base.targets_of(fields["lora_target_modules"]),
            fields.get("lora_dropout"),
        ),
        **base.training_values(
            fields, epochs="num_train_epochs", batch="per_device_train_batch_size", seq_len="max_length"
        ),
        "warmup_ratio": warmup,
        "variant": base.variant_of({"rslora": bool(fields.get("use_rslora")), "dora": bool(fields.get("use_dora"))}),
    }


def is_trl(fields: dict[str, Any]) -> bool:
    """Whether the fields are a `trl sft` config (use_peft)."""
    return "use_peft" in fields


TRL = base.ExportFormat(
    name="trl",
    tool="TRL",
    file_name="trl-sft.yaml",
    usage="trl sft --config {file}",
    fill_in="dataset_name (a hub dataset id or a local path)",
    carried=base.EVERY_FIELD,
    write=base.yaml_writer(trl_sections),
    read=read_trl,
    detect=is_trl,
    detect_order=40,
    variants=("lora", "rslora", "dora"),
)
