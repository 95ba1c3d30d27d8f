"""PEFT: adapter_config.json, written by PEFT's own `LoraConfig` (imported inside the writer), and a README.

Key names from PEFT's `LoraConfig`. JSON has no comments, so the header goes into README.md beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.exports import base
from advisor.presets import Preset
from tuner.errors import AdvisorError
from tuner.models import hub_id


def write_peft(preset: Preset, path: Path, header: str) -> list[Path]:
    """adapter_config.json, written by PEFT's own LoraConfig.save_pretrained, and README.md with the header."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise AdvisorError("the PEFT export needs peft: pip install peft") from None
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=preset.recipe.lora.rank,
        lora_alpha=base.whole(preset.recipe.lora.alpha),
        lora_dropout=preset.recipe.lora.dropout,
        target_modules=preset.recipe.lora.target_modules(),
        bias="none",
        base_model_name_or_path=hub_id(preset.model),
    )
    config.save_pretrained(str(path.parent))
    readme = path.parent / "README.md"
    readme.write_text(peft_readme(preset, header), encoding="utf-8")
    return [path, readme]


def peft_readme(preset: Preset, header: str) -> str:
    """README.md beside adapter_config.json: the header, how to load it, and the training settings it lacks."""
    model = hub_id(preset.model) or base.MODEL_PLACEHOLDER
    return (
        f"# LoRA adapter config: {preset.name}\n\n"
        + "\n".join(f"    {line}" for line in header.splitlines())
        + "\n\nadapter_config.json holds the adapter (rank, alpha, target modules, dropout); JSON has no comments, "
        "so the provenance is here and in preset.yaml. Train with your own loop or the Hugging Face Trainer:\n\n"
        "```python\n"
        "from peft import LoraConfig, get_peft_model\n"
        "from transformers import AutoModelForCausalLM\n\n"
        'config = LoraConfig.from_pretrained("THIS_DIRECTORY")\n'
        f'model = get_peft_model(AutoModelForCausalLM.from_pretrained("{model}"), config)\n'
        "```\n\n"
        "Training settings the adapter config does not carry:\n\n"
        "| setting | value |\n|---|---|\n"
        f"| learning rate | {preset.recipe.learning_rate:g} (cosine schedule) |\n"
        f"| warm-up | {preset.recipe.warmup_ratio:.0%} of the steps |\n"
        f"| epochs | {preset.recipe.epochs} |\n"
        f"| batch | {preset.recipe.batch_size} rows of {preset.recipe.seq_len} tokens (packed) |\n"
        "| weight decay | 0 |\n| gradient clipping | 1.0 |\n"
    )


def read_peft(fields: dict[str, Any]) -> dict[str, Any]:
    """The adapter from adapter_config.json's fields."""
    return base.adapter_values(
        fields["r"], fields["lora_alpha"], base.targets_of(fields["target_modules"]), fields.get("lora_dropout")
    )


def is_peft(fields: dict[str, Any]) -> bool:
    """Whether the fields are a PEFT adapter config (only PEFT writes peft_type)."""
    return "peft_type" in fields


PEFT = base.ExportFormat(
    name="peft",
    tool="PEFT",
    file_name="adapter_config.json",
    usage="LoraConfig.from_pretrained({dir}), then get_peft_model(model, config) (see README.md)",
    fill_in="nothing in adapter_config.json; your training loop takes the learning rate, epochs and batch "
    "from preset.yaml",
    carried=base.ADAPTER,
    write=write_peft,
    read=read_peft,
    detect=is_peft,
    detect_order=0,
)
