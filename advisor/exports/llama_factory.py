"""LLaMA-Factory: llama-factory.yaml, run with `llamafactory-cli train`.

Key names from LLaMA-Factory's `hparams/finetuning_args.py` and `examples/train_lora/llama3_lora_sft.yaml`; the
variants are `use_rslora`, `use_dora`, `pissa_init` (with `pissa_iter` and `pissa_convert`) and `loraplus_lr_ratio`.
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base
from advisor.presets import Preset
from tuner.settings import LORAPLUS_LR_RATIO


def llama_factory_sections(preset: Preset) -> list[base.Section]:
    """llama-factory.yaml's sections: model, method, dataset, output, train."""
    lora = preset.recipe.lora
    target = "all" if lora.targets == "all" else ",".join(lora.target_modules())
    return [
        ("model", {"model_name_or_path": base.model_or_placeholder(preset)}),
        (
            "method (lora_target: all = every linear layer but the output head) and the LoRA variant, if any",
            {
                "stage": "sft",
                "do_train": True,
                "finetuning_type": "lora",
                "lora_rank": lora.rank,
                "lora_alpha": base.whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_target": target,
                **_VARIANT_KEYS.get(lora.variant, {}),
            },
        ),
        (
            "dataset: fill in your dataset (its name in data/dataset_info.json) and your model's template.\n"
            "neat_packing packs rows without attention across examples.",
            {
                "dataset": base.DATA_PLACEHOLDER,
                "template": "REPLACE_WITH_TEMPLATE",
                "cutoff_len": preset.recipe.seq_len,
                "packing": True,
                "neat_packing": True,
            },
        ),
        ("output", {"output_dir": f"saves/{preset.name}"}),
        (
            "train (bf16: false on a CPU or a GPU without bfloat16)",
            {
                "per_device_train_batch_size": preset.recipe.batch_size,
                "gradient_accumulation_steps": 1,
                "learning_rate": preset.recipe.learning_rate,
                "num_train_epochs": float(preset.recipe.epochs),
                "lr_scheduler_type": "cosine",
                "warmup_ratio": preset.recipe.warmup_ratio,
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
                "bf16": True,
            },
        ),
    ]


_VARIANT_KEYS: dict[str, dict[str, Any]] = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    # the fast SVD's 4 iterations, as PEFT's pissa_niter_4; pissa_convert also saves the adapter as plain LoRA
    "pissa": {"pissa_init": True, "pissa_iter": 4, "pissa_convert": True},
    "loraplus": {"loraplus_lr_ratio": LORAPLUS_LR_RATIO},
}


def read_llama_factory(fields: dict[str, Any]) -> dict[str, Any]:
    """The carried values from llama-factory.yaml's fields."""
    rank = base.as_int(fields["lora_rank"])
    flags = {
        "rslora": bool(fields.get("use_rslora")),
        "dora": bool(fields.get("use_dora")),
        "pissa": bool(fields.get("pissa_init")),
        "loraplus": base.loraplus_set(fields.get("loraplus_lr_ratio")),
    }
    alpha = fields.get("lora_alpha") or 2 * rank  # LLaMA-Factory's default: lora_rank * 2
    return {
        **base.adapter_values(
            rank, alpha, base.targets_of(fields.get("lora_target", "all")), fields.get("lora_dropout")
        ),
        **base.training_values(
            fields, epochs="num_train_epochs", batch="per_device_train_batch_size", seq_len="cutoff_len"
        ),
        "warmup_ratio": base.as_float(fields.get("warmup_ratio", 0.0)),
        "variant": base.variant_of(flags),
    }


def is_llama_factory(fields: dict[str, Any]) -> bool:
    """Whether the fields are a LLaMA-Factory config (it alone has finetuning_type)."""
    return "finetuning_type" in fields


LLAMA_FACTORY = base.ExportFormat(
    name="llama-factory",
    tool="LLaMA-Factory",
    file_name="llama-factory.yaml",
    usage="llamafactory-cli train {file}",
    fill_in="dataset (its name in your dataset_info.json) and template (your model's chat template)",
    carried=base.EVERY_FIELD,
    write=base.yaml_writer(llama_factory_sections),
    read=read_llama_factory,
    detect=is_llama_factory,
    detect_order=20,
    variants=("lora", "rslora", "dora", "pissa", "loraplus"),
    variant_notes={"pissa": "pissa_convert saves the plain-LoRA form in output_dir/pissa_converted."},
)
