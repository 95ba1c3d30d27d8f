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
        (
            "Model (trl.ModelConfig): loaded in the preset's precision, with PyTorch's SDPA attention.",
            {
                "model_name_or_path": base.model_or_placeholder(preset),
                "dtype": "float32" if preset.on_cpu else "bfloat16",
                "attn_implementation": "sdpa",
            },
        ),
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
            "Data (trl.ScriptArguments, SFTConfig): fill in dataset_name. With packing, max_length is the row length.\n"
            + _template_note(preset),
            {
                "dataset_name": base.DATA_PLACEHOLDER,
                "max_length": preset.recipe.seq_len,
                "packing": True,
                **_chat_template(preset),
            },
        ),
        (
            "Training (trl.SFTConfig). transformers 5 dropped warmup_ratio: warmup_steps below 1 is the share of\n"
            "the steps (with transformers 4, write warmup_ratio instead). Precision, device and gradient\n"
            "checkpointing are set here because SFTConfig's defaults (bf16 and checkpointing on) differ from the\n"
            + ("preset's: float32 on the CPU." if preset.on_cpu else "preset's: bf16 on one GPU.")
            + (" Checkpointing is on, as the memory budget assumed." if preset.gradient_checkpointing else ""),
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
                "bf16": not preset.on_cpu,
                "use_cpu": preset.on_cpu,
                "gradient_checkpointing": preset.gradient_checkpointing,
            },
        ),
    ]


LLAMA2_CHAT = "meta-llama/Llama-2-7b-chat-hf"
"""Llama-2's chat template lives in its chat model's tokenizer; the base model's tokenizer has none."""


def _chat_template(preset: Preset) -> dict[str, Any]:
    """chat_template_path where the model's own tokenizer has no chat template (Llama-2's base model)."""
    return {"chat_template_path": LLAMA2_CHAT} if base.model_family(preset) == "llama2" else {}


def _template_note(preset: Preset) -> str:
    if base.model_family(preset) == "llama2":
        return (
            "Chat template: Llama-2's base tokenizer has none, so chat_template_path takes the chat model's\n"
            "(conversational or prompt-completion datasets are formatted with it)."
        )
    return "Chat template: the model's own, which TRL applies to conversational and prompt-completion datasets."


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
        # SFTConfig's own defaults where a file leaves them out: bf16 on, gradient checkpointing on
        "hardware": "cpu" if fields.get("use_cpu") else "gpu",
        "gradient_checkpointing": bool(fields.get("gradient_checkpointing", True)),
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
