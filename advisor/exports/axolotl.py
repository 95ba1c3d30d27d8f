"""axolotl: axolotl.yaml, run with `axolotl train`.

Key names from axolotl's pydantic schema (`src/axolotl/utils/schemas/{config,peft,training}.py`); the variants
are `peft_use_rslora`, `peft_use_dora`, `peft_init_lora_weights` (passed to PEFT's LoraConfig as is, in
`src/axolotl/loaders/adapter.py`) and `loraplus_lr_ratio`; QLoRA is `adapter: qlora` with `load_in_4bit`
(`utils/schemas/peft.py` refuses qlora without it; `loaders/model.py` then loads NF4 with double quantisation,
computing in the training dtype). Checked against axolotl 0.19: `attn_implementation` (the legacy
`flash_attention` / `sdp_attention` flags are deprecated), `bf16`, `fp16` and `gradient_checkpointing` in
`utils/schemas/config.py`, `resolve_dtype` and `choose_device` in `utils/config/__init__.py` (no device key: CUDA
where present, else the CPU), the `lora_*_kernel` switches the schema turns on (Triton kernels) and the chat
templates of `utils/schemas/enums.py` (`ChatTemplate`: `tokenizer_default`, `jinja`; none for Llama-2). Dataset
keys from `utils/schemas/datasets.py` (`SFTDataset`: `field_messages`, `message_property_mappings`, `roles`,
`roles_to_train`, `train_on_eos`, `field`; `UserDefinedPrompterType`) and their readers: `prompt_strategies/`
`chat_template.py`, `completion.py` and `user_defined.py` (a mapping as `type`), and `utils/data/wrappers.py`'s
`DATASET_HANDLERS` for `alpaca`.
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base, data
from advisor.exports.templates import LLAMA2_CHAT_TEMPLATE, USER_TURNS
from advisor.presets import Preset
from tuner.data.formats import ROLES
from tuner.defaults import LORAPLUS_LR_RATIO, PISSA_INIT


def axolotl_sections(preset: Preset) -> list[base.Section]:
    """axolotl.yaml's sections: base model, adapter, data, hardware, training."""
    lora = preset.recipe.lora
    adapter: dict[str, Any] = {
        "adapter": "qlora" if preset.recipe.quantize else "lora",
        **({"load_in_4bit": True} if preset.recipe.quantize else {}),
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
        (_adapter_note(preset), adapter),
        _data_section(preset),
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


def _adapter_note(preset: Preset) -> str:
    """The adapter section's comment: what lora_target_linear adapts, and for QLoRA how axolotl quantises."""
    if preset.recipe.quantize is None:
        return "LoRA adapter (lora_target_linear: every linear layer but the output head) and its variant, if any."
    return base.note(
        "QLoRA adapter: adapter qlora with load_in_4bit loads the base model's linear layers through bitsandbytes "
        "in 4-bit NF4 with double quantisation (axolotl's own QLoRA settings, which bnb_config_kwargs would "
        f"override), computing in {base.compute_dtype_text(preset)}; lora_target_linear: every linear layer but "
        "the output head; and its variant, if any."
    )


def _data_section(preset: Preset) -> base.Section:
    """The data section: the dataset in the reader for its format, the chat template, row length and packing."""
    keys = {
        **_chat_template(preset),
        "sequence_len": preset.recipe.seq_len,
        "sample_packing": True,
        "output_dir": f"./outputs/{preset.name}",
    }
    if preset.data_format is None:
        text = (
            "Data: fill in your dataset's path. type chat_template reads conversations (a messages list of "
            "role/content turns), formats them with the chat template below and trains on the assistant's "
            f"turns only, as LoRA Advisor does. {_template_note(preset)} Rows are packed to sequence_len."
        )
        return base.note(text), {"datasets": [{"path": base.DATA_PLACEHOLDER, "type": "chat_template"}], **keys}
    fmt, every = preset.data_format, data.every_token(preset)
    template = (
        _template_note(preset)
        if fmt in data.CONVERSATIONS
        else "chat_template below is the model's own, which axolotl sets on the tokenizer."
    )
    loss = (
        "train_on_inputs: the loss on every token (continued pretraining)."
        if fmt == "text"
        else _LOSS_NOTES[fmt in data.CONVERSATIONS, every].replace("ANSWER", data.answer(preset))
    )
    text = (
        f"Data: fill in your dataset's path. {_format_note(preset)} {loss} {template} Rows are packed to sequence_len."
    )
    return base.note(text), {"datasets": [_dataset(preset)], "train_on_inputs": every, **keys}


_LOSS_NOTES = {
    (True, False): "roles_to_train assistant, with train_on_inputs false: the loss on the assistant turns (and "
    "their end-of-turn tokens) only, as LoRA Advisor trains them.",
    (True, True): "train_on_inputs, every role in roles_to_train and train_on_eos all: the loss on every turn's "
    "text and end-of-turn token (continued pretraining; axolotl leaves the template's role headers out).",
    (False, False): "train_on_inputs false: the loss on ANSWER only, as LoRA Advisor trains it.",
    (False, True): "train_on_inputs: the loss on every token, prompts too (continued pretraining).",
}
"""(conversations?, every token?) -> where the loss is taken, in words."""


def _dataset(preset: Preset) -> dict[str, Any]:
    """The datasets entry that reads the preset's data format (axolotl's docs/dataset-formats)."""
    fmt, every = preset.data_format, data.every_token(preset)
    if fmt in data.CONVERSATIONS:
        sharegpt = fmt == "sharegpt"
        entry: dict[str, Any] = {
            "path": base.DATA_PLACEHOLDER,
            "type": "chat_template",
            "field_messages": "conversations" if sharegpt else "messages",
            "message_property_mappings": {"role": "from", "content": "value"} if sharegpt else _OPENAI,
            "roles_to_train": list(ROLES) if every else ["assistant"],
        }
        if sharegpt:
            entry["roles"] = data.sharegpt_roles()
        return entry | ({"train_on_eos": "all"} if every else {})
    if fmt == "alpaca":
        return {"path": base.DATA_PLACEHOLDER, "type": "alpaca"}
    if fmt == "text":
        return {"path": base.DATA_PLACEHOLDER, "type": "completion", "field": "text"}
    prompt, answer = data.pair_columns(preset)
    turn = USER_TURNS.get(base.model_family(preset) or "", "{instruction}") if fmt == "columns" else "{instruction}"
    user_defined = {"field_instruction": prompt, "field_output": answer, "format": turn, "no_input_format": turn}
    return {"path": base.DATA_PLACEHOLDER, "type": user_defined}


_OPENAI = {"role": "role", "content": "content"}


def _format_note(preset: Preset) -> str:
    """How axolotl reads the preset's data format, in words."""
    fmt = preset.data_format
    if fmt == "columns":
        known = base.model_family(preset) in USER_TURNS
        prompt, response = data.pair_columns(preset)
        return (
            f"axolotl has no reader for two named columns: a user-defined type reads {prompt} as the instruction and "
            f"{response} as the output ({data.columns_origin(preset)}) into format, "
            + (
                "the chat template's text up to the assistant's answer, as LoRA Advisor renders the pair; the "
                "answer ends with EOS."
                if known
                else "which holds the prompt alone: write your model's chat format around {instruction} (format "
                "and no_input_format)."
            )
        )
    return FORMAT_NOTES[fmt or ""]


FORMAT_NOTES = {
    "messages": "type chat_template reads conversations (field_messages, role/content turns) and formats them with "
    "the chat template below.",
    "sharegpt": "type chat_template reads ShareGPT conversations: from/value turns (message_property_mappings), "
    "their from values mapped to roles as LoRA Advisor reads them (roles), formatted with the chat template below.",
    "alpaca": "type alpaca reads Alpaca records (instruction, input, output) into axolotl's Alpaca prompt ('Below is "
    "an instruction that describes a task...'), not the chat template LoRA Advisor renders them with.",
    "prompt-completion": "a user-defined type reads prompt as the instruction and completion as the output, format "
    "{instruction}: the prompt followed by the completion and EOS as plain text, as LoRA Advisor trains plain "
    "strings (message-list prompts and completions need writing as a messages conversation).",
    "text": "type completion reads the text column (field) and splits each document into sequence_len pieces, as "
    "LoRA Advisor does.",
}
"""How axolotl reads each data format (columns: _format_note)."""


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
        "quantize": _quantize_of(fields),
    }


def _quantize_of(fields: dict[str, Any]) -> str | None:
    """'nf4' for axolotl's QLoRA (adapter qlora, load_in_4bit: NF4 with double quantisation unless
    bnb_config_kwargs changes it), None for 16-bit LoRA; TypeError for any other quantisation."""
    adapter = fields.get("adapter")
    if adapter != "qlora":
        if fields.get("load_in_4bit") or fields.get("load_in_8bit"):
            raise TypeError(f"adapter {adapter} on quantised weights: LoRA Advisor's presets are 16-bit or QLoRA")
        return None
    if not fields.get("load_in_4bit"):
        raise TypeError("adapter qlora without load_in_4bit: true, which axolotl refuses")
    overrides = fields.get("bnb_config_kwargs") or {}
    if overrides.get("bnb_4bit_quant_type", "nf4") != "nf4" or not overrides.get("bnb_4bit_use_double_quant", True):
        raise TypeError(f"bnb_config_kwargs {overrides}: LoRA Advisor's QLoRA is NF4 with double quantisation")
    return "nf4"


def is_axolotl(fields: dict[str, Any]) -> bool:
    """Whether the fields are an axolotl config (`adapter` beside `lora_r`)."""
    return "adapter" in fields and "lora_r" in fields


AXOLOTL = base.ExportFormat(
    name="axolotl",
    tool="axolotl",
    file_name="axolotl.yaml",
    usage="axolotl train {file}",
    fill_in="datasets (the path of your data, as conversations for type chat_template)",
    fill_in_data="datasets' path (your data, in the format its section names)",
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
