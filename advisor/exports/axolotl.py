"""axolotl: axolotl.yaml, run with `axolotl train`.

Key names from axolotl's pydantic schema (`src/axolotl/utils/schemas/{config,peft,training}.py`); the variants
are `peft_use_rslora`, `peft_use_dora`, `peft_init_lora_weights` (passed to PEFT's LoraConfig as is, in
`src/axolotl/loaders/adapter.py`) and `loraplus_lr_ratio`. Checked against axolotl 0.19: `attn_implementation`
(the legacy `flash_attention` / `sdp_attention` flags are deprecated), `bf16`, `fp16` and `gradient_checkpointing` in
`utils/schemas/config.py`, `resolve_dtype` and `choose_device` in `utils/config/__init__.py` (no device key: CUDA
where present, else the CPU), the `lora_*_kernel` switches the schema turns on (Triton kernels) and the chat
templates of `utils/schemas/enums.py` (`ChatTemplate`: `tokenizer_default`, `jinja`; none for Llama-2).
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base
from advisor.presets import Preset
from tuner.defaults import LORAPLUS_LR_RATIO, PISSA_INIT


def axolotl_sections(preset: Preset) -> list[base.Section]:
    """axolotl.yaml's sections: base model, adapter, data, hardware, training."""
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
            base.note(
                "Data: fill in your dataset's path. type chat_template reads conversations (a messages list of "
                "role/content turns), formats them with the chat template below and trains on the assistant's "
                f"turns only, as LoRA Advisor does. {_template_note(preset)} Rows are packed to sequence_len."
            ),
            {
                "datasets": [{"path": base.DATA_PLACEHOLDER, "type": "chat_template"}],
                **_chat_template(preset),
                "sequence_len": preset.recipe.seq_len,
                "sample_packing": True,
                "output_dir": f"./outputs/{preset.name}",
            },
        ),
        (base.note(_hardware_note(preset)), _hardware(preset)),
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
            },
        ),
    ]


LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
"""Llama-2-chat's chat template (meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json): the base model's
tokenizer has none, and axolotl names none for Llama-2."""
LORA_KERNELS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")
"""axolotl's fused LoRA kernels: Triton (GPU) kernels its schema turns on for a LoRA adapter unless set."""


def _chat_template(preset: Preset) -> dict[str, Any]:
    """The chat template keys: Llama-2-chat's as Jinja for Llama-2, the tokenizer's own for any other model."""
    if base.model_family(preset) == "llama2":
        return {"chat_template": "jinja", "chat_template_jinja": LLAMA2_CHAT_TEMPLATE}
    return {"chat_template": "tokenizer_default"}


def _template_note(preset: Preset) -> str:
    if base.model_family(preset) == "llama2":
        return (
            "Llama-2's base tokenizer has no chat template and axolotl names none for Llama-2, so "
            "chat_template_jinja holds Llama-2-chat's (from meta-llama/Llama-2-7b-chat-hf)."
        )
    return "chat_template tokenizer_default: the model's own (axolotl refuses a tokenizer without one)."


def _hardware(preset: Preset) -> dict[str, Any]:
    """Precision, attention and gradient checkpointing, and on a CPU the GPU-only LoRA kernels turned off."""
    keys: dict[str, Any] = {
        "bf16": not preset.on_cpu,
        "fp16": False,
        "attn_implementation": "sdpa",
        "gradient_checkpointing": preset.gradient_checkpointing,
    }
    if preset.on_cpu:
        keys.update(dict.fromkeys(LORA_KERNELS, False))
    return keys


def _hardware_note(preset: Preset) -> str:
    checkpointing = (
        "on, as the memory budget assumed" if preset.gradient_checkpointing else "off, as the memory budget was sized"
    )
    if preset.on_cpu:
        where = (
            "Hardware: float32 on the CPU (bf16 and fp16 false; axolotl has no device key and trains on a CUDA GPU "
            "where there is one). PyTorch's SDPA attention keeps packed examples apart with a block-diagonal mask. "
            "The lora_*_kernel switches are off: axolotl turns these Triton (GPU) kernels on unless told."
        )
    else:
        where = (
            "Hardware: bf16 on one CUDA GPU. PyTorch's SDPA attention keeps packed examples apart (with torch >= "
            "2.10 through torch's varlen attention), with no flash-attn to install; before Hopper, axolotl warns "
            "that packing under SDPA in bf16 may give 0.0 loss, and attn_implementation: flash_attention_2 (with "
            "flash-attn installed) avoids it."
        )
    return f"{where} Gradient checkpointing {checkpointing}."


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
        # float32 (bf16 and fp16 off) is a CPU preset's: axolotl has no device key; bf16 'auto' (its default) is a GPU's
        "hardware": "cpu" if fields.get("bf16", "auto") is False and not fields.get("fp16") else "gpu",
        "gradient_checkpointing": bool(fields.get("gradient_checkpointing", False)),  # axolotl's default: off
    }


def is_axolotl(fields: dict[str, Any]) -> bool:
    """Whether the fields are an axolotl config (`adapter` beside `lora_r`)."""
    return "adapter" in fields and "lora_r" in fields


AXOLOTL = base.ExportFormat(
    name="axolotl",
    tool="axolotl",
    file_name="axolotl.yaml",
    usage="axolotl train {file}",
    fill_in="datasets (the path of your data, as conversations for type chat_template)",
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
