"""TRL: trl-sft.yaml, run with `trl sft --config`.

Key names from TRL's `SFTConfig`, `ModelConfig` and `ScriptArguments` (what `trl sft` parses). `ModelConfig` has
`use_rslora` and `use_dora`, which `get_peft_config` passes to PEFT's LoraConfig; it has no PiSSA initialisation
and `trl sft` no LoRA+ optimizer, so those export as plain LoRA and the header says so. Data keys from TRL 1.16's
`SFTConfig` (`assistant_only_loss`, `completion_only_loss`, `dataset_text_field`, `packing_strategy`,
`chat_template_path`) and `trainer/sft_trainer.py`: a .jinja `chat_template_path` is read as the template,
`maybe_convert_to_chatml` renames ShareGPT's keys but not its roles, and `assistant_only_loss` needs
`{% generation %}` markers, which `chat_template_utils.get_training_chat_template` adds only to templates it knows.
QLoRA is ModelConfig's `load_in_4bit`, `bnb_4bit_quant_type` and `use_bnb_nested_quant`, which
`trainer/utils.py`'s `get_quantization_config` passes to transformers' BitsAndBytesConfig, computing in `dtype`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.exports import base, data
from advisor.exports.templates import TEMPLATE_NAMES, training_template
from advisor.presets import Preset
from tuner.data.formats import SHAREGPT_ROLES


def trl_sections(preset: Preset) -> list[base.Section]:
    """trl-sft.yaml's sections: model, LoRA, data, training."""
    lora = preset.recipe.lora
    return [
        (
            _model_note(preset),
            {
                "model_name_or_path": base.model_or_placeholder(preset),
                "dtype": "float32" if preset.on_cpu else "bfloat16",
                "attn_implementation": "sdpa",
                **(QLORA_KEYS if preset.recipe.quantize else {}),
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
        _data_section(preset),
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


QLORA_KEYS: dict[str, Any] = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "use_bnb_nested_quant": True}
"""QLoRA in trl.ModelConfig's keys: `get_quantization_config` makes them a BitsAndBytesConfig (nested quant: double
quantisation) computing in `dtype`."""


def _model_note(preset: Preset) -> str:
    """The model section's comment: precision and attention, and for QLoRA how TRL quantises."""
    opening = "Model (trl.ModelConfig): loaded in the preset's precision, with PyTorch's SDPA attention."
    if preset.recipe.quantize is None:
        return opening
    return base.note(
        f"{opening} load_in_4bit, bnb_4bit_quant_type nf4 and use_bnb_nested_quant: QLoRA, the linear layers in "
        "4-bit NF4 with double quantisation (TRL's get_quantization_config builds the BitsAndBytesConfig, computing "
        "in dtype)."
    )


def _data_section(preset: Preset) -> base.Section:
    """The data section: the dataset, row length and packing; for a known format, where the loss is taken and the
    chat template."""
    keys: dict[str, Any] = {"dataset_name": base.DATA_PLACEHOLDER, "max_length": preset.recipe.seq_len, "packing": True}
    opening = "Data (trl.ScriptArguments, SFTConfig): fill in dataset_name. With packing, max_length is the row length."
    fmt = preset.data_format
    if fmt is None:
        return f"{opening}\n{_template_note(preset)}", {**keys, **_chat_template(preset)}
    key = "assistant_only_loss" if fmt in data.CONVERSATIONS else "completion_only_loss"
    if data.every_token(preset):
        keys["packing_strategy"] = "bfd_split"
        loss = (
            f"{key} false: the loss on every token{'' if fmt == 'text' else ', prompts too'} (continued pretraining). "
            "packing_strategy bfd_split: what does not fit a row goes on in another, as LoRA Advisor splits it."
        )
    elif fmt in data.CONVERSATIONS:
        loss = "assistant_only_loss: the loss on the assistant turns only. " + _marked_template_note(preset)
    else:
        loss = "completion_only_loss: the loss on the completion only (TRL's default for prompt/completion, set here)."
    note = data.format_note(FORMAT_NOTES, preset)
    if fmt == "text":
        template: dict[str, Any] = {"dataset_text_field": "text"}
        paragraphs = [opening, note, loss]
    elif _marked(preset):
        template = {"chat_template_path": TRAINING_TEMPLATE}
        paragraphs = [opening, note, loss]
    else:
        template = _chat_template(preset)
        paragraphs = [opening, note, loss, _template_note(preset)]
    return base.note(*paragraphs), {**keys, key: not data.every_token(preset), **template}


TRAINING_TEMPLATE = "chat-template.jinja"
"""The file beside trl-sft.yaml holding the model's chat template with {% generation %} markers."""
_ROLES = ", ".join(f"{value!r}: {role!r}" for value, role in SHAREGPT_ROLES.items())
FORMAT_NOTES = {
    "messages": "Your data: conversations in a messages column (role/content turns), TRL's conversational format, "
    "formatted with the chat template.",
    "sharegpt": "Your data: ShareGPT conversations. TRL renames conversations/from/value to messages/role/content "
    "itself (maybe_convert_to_chatml) but keeps ShareGPT's role names, which the chat template does not know: map "
    "them first, dataset.map(lambda row: {'messages': [{'role': ROLES[turn['from']], 'content': turn['value']} for "
    "turn in row['conversations']]}, remove_columns=['conversations']) with ROLES = {" + _ROLES + "}.",
    "alpaca": "Your data: Alpaca records, which TRL does not read: write each as a conversational prompt/completion, "
    "prompt [{'role': 'user', 'content': instruction + '\\n\\n' + input}] and completion [{'role': 'assistant', "
    "'content': output}], as LoRA Advisor renders them.",
    "columns": "Your data: {prompt}/{response} columns; TRL reads prompt/completion: write each row as a "
    "conversational prompt/completion, prompt [{{'role': 'user', 'content': {PROMPT}}}] and completion [{{'role': "
    "'assistant', 'content': {RESPONSE}}}], so that the chat template formats them as LoRA Advisor does (plain "
    "strings train as raw text).",
    "prompt-completion": "Your data: TRL's own prompt/completion format. Plain strings train as the prompt followed by "
    "the completion, message lists through the chat template, as LoRA Advisor trains them.",
    "text": "Your data: plain text in a text column (dataset_text_field), TRL's language-modelling format: each "
    "document ends with EOS, and documents are packed into rows of max_length tokens.",
}
"""What each data format is to TRL, and how to convert the ones it does not read."""


def _marked(preset: Preset) -> bool:
    """Whether chat-template.jinja goes beside the file: assistant-only loss, for a model whose template is known."""
    return (
        preset.data_format in data.CONVERSATIONS
        and not data.every_token(preset)
        and training_template(base.model_family(preset)) is not None
    )


def _marked_template_note(preset: Preset) -> str:
    """What assistant_only_loss needs of the chat template, and where this export's comes from."""
    if _marked(preset):
        return (
            f"It needs a chat template with {{% generation %}} markers: chat_template_path is {TRAINING_TEMPLATE} "
            f"beside this file, {TEMPLATE_NAMES[base.model_family(preset) or '']} with the markers around each "
            "assistant turn and its end-of-turn token (TRL reads it from where trl sft runs: run it in this directory)."
        )
    return (
        "It needs a chat template with {% generation %} markers: TRL 1.16 swaps in a marked copy of the templates it "
        "knows (Llama 3, Qwen 2.5 and 3, Gemma, Phi-3 and a few more) and otherwise stops with 'The chat template is "
        "not training-compatible': then give chat_template_path a .jinja file with the markers, or set "
        "assistant_only_loss false, which trains on every token."
    )


def write_trl(preset: Preset, path: Path, header: str) -> list[Path]:
    """trl-sft.yaml, and chat-template.jinja beside it where the loss is on the assistant turns of a known model."""
    written = base.yaml_writer(trl_sections)(preset, path, header)
    template = training_template(base.model_family(preset)) if _marked(preset) else None
    if template is not None:
        written.append(path.with_name(TRAINING_TEMPLATE))
        written[-1].write_text(template, encoding="utf-8")
    return written


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
        "quantize": _quantize_of(fields),
    }


def _quantize_of(fields: dict[str, Any]) -> str | None:
    """'nf4' for 4-bit NF4 with nested (double) quantisation, None for 16 bits; TypeError for another quantisation
    (ModelConfig's defaults where a key is left out: NF4, no nested quantisation)."""
    if not fields.get("load_in_4bit"):
        if fields.get("load_in_8bit"):
            raise TypeError("load_in_8bit: LoRA Advisor's presets are 16-bit or 4-bit NF4 (QLoRA)")
        return None
    kind, nested = fields.get("bnb_4bit_quant_type", "nf4"), bool(fields.get("use_bnb_nested_quant", False))
    if (kind, nested) != ("nf4", True):
        raise TypeError(
            f"bnb_4bit_quant_type {kind} with use_bnb_nested_quant {nested}: LoRA Advisor's QLoRA is NF4, "
            "double quantised"
        )
    return "nf4"


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
    write=write_trl,
    read=read_trl,
    detect=is_trl,
    detect_order=40,
    variants=("lora", "rslora", "dora"),
)
