"""PEFT: adapter_config.json, written by PEFT's own `LoraConfig` (imported inside the writer), and a README.

Key names from PEFT's `LoraConfig`: the variants are `use_rslora`, `use_dora` and `init_lora_weights`
("pissa_niter_4"); LoRA+ is an optimizer (`peft.optimizers.create_loraplus_optimizer`), not a config key, so
README.md shows it, and so does QLoRA's 4-bit base model (transformers' `BitsAndBytesConfig`, PEFT's
`prepare_model_for_kbit_training`). JSON has no comments, so the header goes into README.md beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.exports import base, data
from advisor.presets import Preset
from tuner.defaults import LORAPLUS_LR_RATIO
from tuner.errors import AdvisorError
from tuner.models.load import hub_id


def write_peft(preset: Preset, path: Path, header: str) -> list[Path]:
    """adapter_config.json, written by PEFT's own LoraConfig.save_pretrained, and README.md with the header."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise AdvisorError("the PEFT export needs peft: pip install peft") from None
    lora = preset.recipe.lora
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.rank,
        lora_alpha=base.whole(lora.alpha),
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules(),
        bias="none",
        base_model_name_or_path=hub_id(preset.model),
        **lora.peft_arguments(),  # type: ignore[arg-type]
    )
    config.save_pretrained(str(path.parent))
    readme = path.parent / "README.md"
    readme.write_text(peft_readme(preset, header), encoding="utf-8")
    return [path, readme]


def peft_readme(preset: Preset, header: str) -> str:
    """README.md beside adapter_config.json: the header, how to load it, and the training settings it lacks."""
    qlora = preset.recipe.quantize is not None
    return (
        f"# {'QLoRA' if qlora else 'LoRA'} adapter config: {preset.name}\n\n"
        + "\n".join(f"    {line}" for line in header.splitlines())
        + "\n\nadapter_config.json holds the adapter (rank, alpha, target modules, dropout, and rsLoRA, DoRA or PiSSA "
        "where the preset has one); JSON has no comments, "
        "so the provenance is here and in preset.yaml. "
        + ("QLoRA's 4-bit base model is no adapter setting: the code below loads it. " if qlora else "")
        + "Train with your own loop or the Hugging Face Trainer:\n\n"
        + (_qlora_snippet(preset) if qlora else _lora_snippet(preset))
        + "\nTraining settings the adapter config does not carry:\n\n"
        "| setting | value |\n|---|---|\n"
        f"| learning rate | {preset.recipe.learning_rate:g} (cosine schedule) |\n"
        f"| warm-up | {preset.recipe.warmup_ratio:.0%} of the steps |\n"
        f"| epochs | {preset.recipe.epochs} |\n"
        f"| batch | {preset.recipe.batch_size} rows of {preset.recipe.seq_len} tokens (packed) |\n"
        "| weight decay | 0 |\n| gradient clipping | 1.0 |\n"
        + (
            "| precision | float32 on the CPU (no autocast) |\n"
            if preset.on_cpu
            else "| precision | bf16 on one GPU (model loaded with dtype=torch.bfloat16), SDPA attention |\n"
        )
        + (f"| quantisation | {_QLORA_ROW.format(compute=base.compute_dtype_text(preset))} |\n" if qlora else "")
        + f"| gradient checkpointing | {'on' if preset.gradient_checkpointing else 'off'} |\n"
        + _data_rows(preset)
        + _VARIANT_README.get(preset.recipe.lora.variant, "")
    )


def _lora_snippet(preset: Preset) -> str:
    """The README's code: the base model, and the adapter from adapter_config.json on it."""
    return (
        "```python\n"
        "from peft import LoraConfig, get_peft_model\n"
        "from transformers import AutoModelForCausalLM\n\n"
        'config = LoraConfig.from_pretrained("THIS_DIRECTORY")\n'
        f'model = get_peft_model(AutoModelForCausalLM.from_pretrained("{_model(preset)}"), config)\n'
        "```\n"
    )


def _qlora_snippet(preset: Preset) -> str:
    """The README's code for QLoRA: the base model in 4-bit NF4 (transformers' BitsAndBytesConfig), made ready for
    training by PEFT's prepare_model_for_kbit_training, and the adapter from adapter_config.json on it."""
    dtype = "torch.float32" if preset.on_cpu else "torch.bfloat16"
    return (
        "```python\n"
        "import torch\n"
        "from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training\n"
        "from transformers import AutoModelForCausalLM, BitsAndBytesConfig\n\n"
        "quantization = BitsAndBytesConfig(\n"
        "    load_in_4bit=True,\n"
        '    bnb_4bit_quant_type="nf4",\n'
        "    bnb_4bit_use_double_quant=True,\n"
        f"    bnb_4bit_compute_dtype={dtype},\n"
        ")\n"
        "model = AutoModelForCausalLM.from_pretrained(\n"
        f'    "{_model(preset)}", quantization_config=quantization, dtype={dtype}\n'
        ")\n"
        # the input gradients and fp32 norms QLoRA needs; checkpointing as the preset was sized
        f"model = prepare_model_for_kbit_training(model, use_gradient_checkpointing={preset.gradient_checkpointing})\n"
        'config = LoraConfig.from_pretrained("THIS_DIRECTORY")\n'
        "model = get_peft_model(model, config)\n"
        "```\n"
    )


_QLORA_ROW = (
    "QLoRA: the base model's linear layers in 4-bit NF4 with double quantisation (bitsandbytes), computing in "
    "{compute}; prepare_model_for_kbit_training before get_peft_model"
)


def _model(preset: Preset) -> str:
    """The preset's model as the README's code names it: its hub id, or the placeholder."""
    return hub_id(preset.model) or base.MODEL_PLACEHOLDER


def _data_rows(preset: Preset) -> str:
    """The table's rows on the data's format and which tokens carry the loss (none for an unknown format)."""
    fmt = preset.data_format
    if fmt is None:
        return ""
    if data.every_token(preset):
        how = "labels = input_ids: every token (continued pretraining)"
    elif fmt in data.CONVERSATIONS:
        how = (
            "the assistant turns only: render each conversation with the chat template and set every other token's "
            "label to -100 (TRL's SFTTrainer: assistant_only_loss=True)"
        )
    else:
        how = (
            f"{data.answer(preset)} only: the prompt, rendered with the chat template as a user turn, gets labels "
            "-100 (TRL's SFTTrainer: completion_only_loss=True)"
        )
    return f"| data | {data.format_name(preset)} (LoRA Advisor's {fmt!r} format) |\n| loss | {how} |\n"


_VARIANT_README = {
    "pissa": (
        "\nPiSSA rewrites the base weights it adapts. Save the initial adapter before training and convert the "
        "trained one to plain LoRA, which loads on the original base model (PEFT's PiSSA example):\n\n"
        "```python\n"
        'model.peft_config["default"].init_lora_weights = True\n'
        'model.save_pretrained("pissa_init")\n'
        'model.peft_config["default"].init_lora_weights = "pissa_niter_4"\n'
        "# ... train ...\n"
        'model.save_pretrained("adapter", path_initial_model_for_weight_conversion="pissa_init")\n'
        "```\n"
    ),
    "loraplus": (
        f"\nLoRA+ is an optimizer, not an adapter setting: B's learning rate is {LORAPLUS_LR_RATIO}x A's.\n\n"
        "```python\n"
        "import torch\n"
        "from peft.optimizers import create_loraplus_optimizer\n\n"
        "optimizer = create_loraplus_optimizer(\n"
        "    model=model, optimizer_cls=torch.optim.AdamW, lr=LEARNING_RATE, "
        f"loraplus_lr_ratio={LORAPLUS_LR_RATIO}, weight_decay=0.0\n"
        ")\n"
        "```\n"
    ),
}
"""README.md's section on a variant that adapter_config.json alone does not set up."""


def read_peft(fields: dict[str, Any]) -> dict[str, Any]:
    """The adapter and its variant from adapter_config.json's fields."""
    init = str(fields.get("init_lora_weights", True)).lower()
    flags = {
        "rslora": bool(fields.get("use_rslora")),
        "dora": bool(fields.get("use_dora")),
        "pissa": init.startswith("pissa"),
    }
    return {
        **base.adapter_values(
            fields["r"], fields["lora_alpha"], base.targets_of(fields["target_modules"]), fields.get("lora_dropout")
        ),
        "variant": base.variant_of(flags),
    }


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
    carried=(*base.ADAPTER, "variant"),
    write=write_peft,
    read=read_peft,
    detect=is_peft,
    detect_order=0,
    variants=("lora", "rslora", "dora", "pissa"),
    variant_notes={
        "pissa": "README.md shows how to save it as plain LoRA for the original base model.",
        "loraplus": "LoRA+ is PEFT's optimizer, not an adapter setting: README.md shows it.",
    },
    qlora_note="adapter_config.json has no setting for it: README.md's code loads the base model with transformers' "
    "BitsAndBytesConfig and prepares it with PEFT's prepare_model_for_kbit_training.",
)
