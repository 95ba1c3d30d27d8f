"""axolotl: axolotl.yaml, run with `axolotl train`.

Key names from axolotl's pydantic schema (`src/axolotl/utils/schemas/{config,peft,training}.py`); the variants
are `peft_use_rslora`, `peft_use_dora`, `peft_init_lora_weights` (passed to PEFT's LoraConfig as is, in
`src/axolotl/loaders/adapter.py`) and `loraplus_lr_ratio`.
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base
from advisor.presets import Preset
from tuner.settings import LORAPLUS_LR_RATIO, PISSA_INIT


def axolotl_sections(preset: Preset) -> list[base.Section]:
    """axolotl.yaml's sections: base model, adapter, data, training."""
    lora = preset.recipe.lora
    adapter: dict[str, Any] = {
        "adapter": "lora",
        "lora_r": lora.rank,
        "lora_alpha": base.whole(lora.alpha),
        "lora_dropout": lora.dropout,
    }
    if lora.targets == "all":
        adapter["lora_target_linear"] = True
    else:
        adapter["lora_target_modules"] = list(lora.target_modules())
    adapter.update(_VARIANT_KEYS.get(lora.variant, {}))
    return [
        ("Base model (hub id or local path).", {"base_model": base.model_or_placeholder(preset)}),
        ("LoRA adapter (lora_target_linear: every linear layer but the output head) and its variant, if any.", adapter),
        (
            "Data: fill in your dataset (type: alpaca, chat_template, ...). Rows are packed to sequence_len;\n"
            "flash_attention keeps packed examples from attending to each other (needs flash-attn; else\n"
            "sdp_attention: true).",
            {
                "datasets": [{"path": base.DATA_PLACEHOLDER, "type": "alpaca"}],
                "sequence_len": preset.recipe.seq_len,
                "sample_packing": True,
                "flash_attention": True,
                "output_dir": f"./outputs/{preset.name}",
            },
        ),
        (
            "Training: one optimizer step = micro_batch_size x gradient_accumulation_steps rows.",
            {
                "micro_batch_size": preset.recipe.batch_size,
                "gradient_accumulation_steps": 1,
                "num_epochs": preset.recipe.epochs,
                "learning_rate": preset.recipe.learning_rate,
                "lr_scheduler": "cosine",
                "warmup_ratio": preset.recipe.warmup_ratio,
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
                "bf16": "auto",
            },
        ),
    ]


_VARIANT_KEYS: dict[str, dict[str, Any]] = {
    "rslora": {"peft_use_rslora": True},
    "dora": {"peft_use_dora": True},
    "pissa": {"peft_init_lora_weights": PISSA_INIT},
    "loraplus": {"loraplus_lr_ratio": LORAPLUS_LR_RATIO},
}


def read_axolotl(fields: dict[str, Any]) -> dict[str, Any]:
    """The carried values from axolotl.yaml's fields."""
    targets = "all" if fields.get("lora_target_linear") else base.targets_of(fields["lora_target_modules"])
    flags = {
        "rslora": bool(fields.get("peft_use_rslora")),
        "dora": bool(fields.get("peft_use_dora")),
        "pissa": str(fields.get("peft_init_lora_weights") or "").lower().startswith("pissa"),
        "loraplus": base.loraplus_set(fields.get("loraplus_lr_ratio")),
    }
    return {
        **base.adapter_values(fields["lora_r"], fields["lora_alpha"], targets, fields.get("lora_dropout")),
        **base.training_values(fields, epochs="num_epochs", batch="micro_batch_size", seq_len="sequence_len"),
        "warmup_ratio": base.as_float(fields.get("warmup_ratio", 0.0)),
        "variant": base.variant_of(flags),
    }


def is_axolotl(fields: dict[str, Any]) -> bool:
    """Whether the fields are an axolotl config (`adapter` beside `lora_r`)."""
    return "adapter" in fields and "lora_r" in fields


AXOLOTL = base.ExportFormat(
    name="axolotl",
    tool="axolotl",
    file_name="axolotl.yaml",
    usage="axolotl train {file}",
    fill_in="datasets (path and type of your data)",
    carried=base.EVERY_FIELD,
    write=base.yaml_writer(axolotl_sections),
    read=read_axolotl,
    detect=is_axolotl,
    detect_order=30,
    variants=("lora", "rslora", "dora", "pissa", "loraplus"),
    variant_notes={
        "pissa": "axolotl saves the adapter as PiSSA trained it, for the base weights PiSSA rewrote: it has no "
        "conversion to plain LoRA (PEFT's save_pretrained(..., path_initial_model_for_weight_conversion=...)).",
    },
)
