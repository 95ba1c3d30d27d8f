"""LitGPT: litgpt-lora.yaml, run with `litgpt finetune_lora --config`.

Key names from LitGPT's `litgpt/args.py` and `config_hub/finetune/llama-3.2-1B/lora.yaml`. LitGPT's LoRA
(`litgpt/lora.py`) is plain LoRA, scaled by alpha / r, with none of rsLoRA, DoRA, PiSSA or LoRA+: a preset with a
variant exports as plain LoRA and the header says so.
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base
from advisor.presets import Preset
from tuner.models import hub_id


def litgpt_sections(preset: Preset) -> list[base.Section]:
    """litgpt-lora.yaml's sections: checkpoint, precision, LoRA, data, training, optimizer."""
    lora = preset.recipe.lora
    attention = lora.targets in ("attention", "all")
    model = hub_id(preset.model)
    # LitGPT's warm-up fraction is a share of one epoch; ours is a share of all steps.
    warmup_fraction = round(min(1.0, preset.recipe.warmup_ratio * preset.recipe.epochs), 10)
    return [
        (
            "The model as `litgpt download HUB_ID` stores it.",
            {
                "checkpoint_dir": f"checkpoints/{model or base.MODEL_PLACEHOLDER}",
                "out_dir": f"out/finetune/{preset.name}",
            },
        ),
        ("bf16-true keeps the weights in bfloat16 (32-true on a CPU).", {"precision": "bf16-true", "devices": 1}),
        (
            "LoRA: query, key, value and projection are attention's q/k/v/o_proj; lora_mlp the MLP.",
            {
                "lora_r": lora.rank,
                "lora_alpha": base.whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_query": attention,
                "lora_key": attention,
                "lora_value": attention,
                "lora_projection": attention,
                "lora_mlp": lora.targets in ("mlp", "all"),
                "lora_head": False,
            },
        ),
        (
            "Data: fill in your JSON file (instruction / input / output records).",
            {
                "data": {
                    "class_path": "litgpt.data.JSON",
                    "init_args": {"json_path": base.DATA_PLACEHOLDER, "val_split_fraction": 0.05},
                }
            },
        ),
        (
            f"Training: lr_warmup_fraction is a share of one epoch ({preset.recipe.warmup_ratio:.0%} of all steps over "
            f"{preset.recipe.epochs} epochs);\nlr_warmup_steps must then be null. The cosine decays to min_lr 0.",
            {
                "train": {
                    "global_batch_size": preset.recipe.batch_size,
                    "micro_batch_size": preset.recipe.batch_size,
                    "epochs": preset.recipe.epochs,
                    "max_seq_length": preset.recipe.seq_len,
                    "lr_warmup_fraction": warmup_fraction,
                    "lr_warmup_steps": None,
                    "max_norm": 1.0,
                    "min_lr": 0.0,
                }
            },
        ),
        (
            "Optimizer (LitGPT keeps the learning rate here).",
            {
                "optimizer": {
                    "class_path": "torch.optim.AdamW",
                    "init_args": {"lr": preset.recipe.learning_rate, "weight_decay": 0.0},
                }
            },
        ),
    ]


def read_litgpt(fields: dict[str, Any]) -> dict[str, Any]:
    """The carried values from litgpt-lora.yaml's fields (its warm-up fraction is a share of one epoch)."""
    flags = {name: bool(fields.get(f"lora_{name}")) for name in ("query", "key", "value", "projection", "mlp")}
    attention = [flags[name] for name in ("query", "key", "value", "projection")]
    if all(attention):
        targets = "all" if flags["mlp"] else "attention"
    elif not any(attention) and flags["mlp"]:
        targets = "mlp"
    else:
        raise TypeError(f"LoRA flags {flags}: LoRA Advisor's presets adapt all attention projections or none")
    train = fields["train"]
    epochs = base.as_int(train["epochs"])
    optimizer = fields.get("optimizer")
    # Recent LitGPT keeps the learning rate with the optimizer; older versions in train.learning_rate.
    rate = optimizer["init_args"]["lr"] if isinstance(optimizer, dict) else train["learning_rate"]
    fraction = train.get("lr_warmup_fraction")
    return {
        **base.adapter_values(fields["lora_r"], fields["lora_alpha"], targets, fields.get("lora_dropout")),
        "learning_rate": base.as_float(rate),
        "epochs": epochs,
        "batch_size": base.as_int(train["global_batch_size"]),
        "seq_len": base.as_int(train["max_seq_length"]),
        "warmup_ratio": round(base.as_float(fraction) / epochs, 10) if fraction is not None else 0.0,
    }


def is_litgpt(fields: dict[str, Any]) -> bool:
    """Whether the fields are a LitGPT config (lora_query, or a top-level checkpoint_dir)."""
    return "lora_query" in fields or "checkpoint_dir" in fields


LITGPT = base.ExportFormat(
    name="litgpt",
    tool="LitGPT",
    file_name="litgpt-lora.yaml",
    usage="litgpt finetune_lora --config {file}",
    fill_in="data.init_args.json_path (your data); run `litgpt download MODEL` for checkpoint_dir",
    carried=(*base.ADAPTER, *base.TRAINING, "warmup_ratio"),  # no variant: LitGPT has plain LoRA only
    write=base.yaml_writer(litgpt_sections),
    read=read_litgpt,
    detect=is_litgpt,
    detect_order=90,  # checkpoint_dir is a common name: tried after every other tool's keys
)
