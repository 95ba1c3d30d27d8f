"""torchtune: torchtune.yaml, run with `tune run lora_finetune_single_device --config`.

Key names from torchtune 0.6.1's `recipes/configs/llama3_2/1B_lora_single_device.yaml` and its LoRA builders, whose
`use_dora` is the one variant they take (`recipes/configs/llama3/8B_dora_single_device.yaml`): torchtune scales
adapters by alpha / r only and initialises them as LoRA, and its recipe's optimizer has one rate, so rsLoRA, PiSSA
and LoRA+ export as plain LoRA and the header says so. Device, dtype and activation checkpointing/offloading are
what `recipes/lora_finetune_single_device.py` reads (`utils.get_device`, `training.get_dtype`: 'fp32' or 'bf16');
prompt templates are `torchtune.models.llama2.Llama2ChatTemplate` and `torchtune.data.ChatMLTemplate`; torchtune
has no attention setting (`modules/attention_utils.py`: SDPA, flex attention for packed rows on CUDA). Dataset
builders from `torchtune/datasets/` (`chat_dataset`, `instruct_dataset`, `alpaca_dataset`, `text_completion_dataset`)
and their message transforms in `data/_messages.py` (`OpenAIToMessages`, `ShareGPTToMessages`). QLoRA is each LoRA
builder's `qlora_` twin (`models/llama2/_model_builders.py`: `quantize_base=True`, torchao's `to_nf4` in
`modules/peft/lora.py`).
scripts/export_checks/check_torchtune.py loads the file with `tune validate` and the recipe's own code.
"""

from __future__ import annotations

import textwrap
from typing import Any

from advisor.exports import base, data
from advisor.presets import Preset
from tuner.defaults import ATTENTION_MODULES

# torchtune builds models from its own builders; the ones for the paper's model, else an example to replace.
_TORCHTUNE_LLAMA2_7B = {
    "model": "torchtune.models.llama2.lora_llama2_7b",
    "tokenizer": "torchtune.models.llama2.llama2_tokenizer",
    "tokenizer_file": "tokenizer.model",
    "model_type": "LLAMA2",
}
_TORCHTUNE_EXAMPLE = {
    "model": "torchtune.models.llama3_2.lora_llama3_2_1b",
    "tokenizer": "torchtune.models.llama3.llama3_tokenizer",
    "tokenizer_file": "original/tokenizer.model",
    "model_type": "LLAMA3_2",
}
QLORA_BUILDERS = {
    "torchtune.models.llama2.lora_llama2_7b": "torchtune.models.llama2.qlora_llama2_7b",
    "torchtune.models.llama3_2.lora_llama3_2_1b": "torchtune.models.llama3_2.qlora_llama3_2_1b",
}
"""Each LoRA builder above -> its QLoRA twin in torchtune 0.6.1 (`partial(lora_..., quantize_base=True)`, as its
`recipes/configs/llama2/7B_qlora_single_device.yaml` names it); a builder without one is not guessed at."""

# Each model family's chat format as torchtune's prompt template (a tokenizer argument).
PROMPT_TEMPLATES = {
    "llama2": ("torchtune.models.llama2.Llama2ChatTemplate", "Llama-2's chat format ([INST] ... [/INST])"),
    "smollm2": ("torchtune.data.ChatMLTemplate", "SmolLM2's chat format, ChatML (<|im_start|> ... <|im_end|>)"),
}
DEVICES = {"cpu": ("cpu", "fp32"), "gpu": ("cuda", "bf16")}
"""The preset's hardware as torchtune's device and dtype."""


def _note(*paragraphs: str) -> str:
    """A section comment: each paragraph wrapped to fit a 110-character line once commented."""
    return "\n".join(
        textwrap.fill(each, width=106, break_long_words=False, break_on_hyphens=False) for each in paragraphs
    )


def torchtune_family(model: str | None) -> dict[str, str] | None:
    """torchtune's builders for the model when we know them (the paper's Llama-2-7B), else None."""
    if model and "llama-2-7b" in model.lower():
        return _TORCHTUNE_LLAMA2_7B
    return None


def torchtune_refusal(preset: Preset) -> str | None:
    """torchtune's LoRA builders refuse an empty lora_attn_modules, so an MLP-only preset cannot go there."""
    if preset.recipe.lora.targets == "mlp":
        return (
            "torchtune's LoRA builders need at least one attention module (an empty lora_attn_modules is refused), "
            "so an MLP-only preset cannot be exported to torchtune"
        )
    return None


def torchtune_sections(preset: Preset) -> list[base.Section]:
    """torchtune.yaml's sections: output, model, tokenizer, checkpoints, data, optimizer, training, logging."""
    lora = preset.recipe.lora
    family = torchtune_family(preset.model)
    builder = family or _TORCHTUNE_EXAMPLE
    attention = [("output_proj" if name == "o_proj" else name) for name in ATTENTION_MODULES]
    template = PROMPT_TEMPLATES.get(base.model_family(preset) or "")
    device, dtype = DEVICES[preset.hardware]
    model_note = (
        f"Model: torchtune's own builder for {preset.model}."
        if family
        else f"Model: torchtune has no builder for {preset.model or 'an unnamed model'}; Llama 3.2 1B's builder is an\n"
        "example: replace _component_ (and the tokenizer and checkpointer.model_type) with your model's.\n"
        "torchtune names o_proj output_proj."
    )
    component = builder["model"]
    if preset.recipe.quantize is not None:
        component = QLORA_BUILDERS.get(builder["model"], component)
        model_note += "\n" + _qlora_note(builder["model"], family is not None)
    return [
        ("Where checkpoints and logs go.", {"output_dir": f"/tmp/torchtune/{preset.name}"}),
        (
            model_note,
            {
                "model": {
                    "_component_": component,
                    "lora_attn_modules": attention,
                    "apply_lora_to_mlp": lora.targets in ("mlp", "all"),
                    "apply_lora_to_output": False,
                    "lora_rank": lora.rank,
                    "lora_alpha": base.whole(lora.alpha),
                    "lora_dropout": lora.dropout,
                    **({"use_dora": True} if lora.variant == "dora" else {}),
                }
            },
        ),
        (
            _tokenizer_note(preset, family is not None),
            {
                "tokenizer": {
                    "_component_": builder["tokenizer"],
                    "path": f"REPLACE_WITH_CHECKPOINT_DIR/{builder['tokenizer_file']}",
                    "max_seq_len": preset.recipe.seq_len,
                    **({"prompt_template": template[0]} if template else {}),
                }
            },
        ),
        (
            "Checkpoints: fill in where `tune download` put the model and its weight files.",
            {
                "checkpointer": {
                    "_component_": "torchtune.training.FullModelHFCheckpointer",
                    "checkpoint_dir": "REPLACE_WITH_CHECKPOINT_DIR",
                    "checkpoint_files": ["REPLACE_WITH_WEIGHT_FILES"],
                    "recipe_checkpoint": None,
                    "output_dir": "${output_dir}",
                    "model_type": builder["model_type"],
                },
                "resume_from_checkpoint": False,
                "save_adapter_weights_only": False,
            },
        ),
        (
            _data_note(preset),
            {"dataset": _dataset(preset), "seed": None, "shuffle": True, "batch_size": preset.recipe.batch_size},
        ),
        (
            _note(
                "Optimizer and schedule. torchtune counts warm-up in optimizer steps (num_warmup_steps): "
                f"{base.warmup_steps_note(preset)}. With packed rows an epoch is packed rows / batch_size steps, "
                "fewer than examples / batch_size: recount with yours.",
            ),
            {
                "optimizer": {
                    "_component_": "torch.optim.AdamW",
                    "lr": preset.recipe.learning_rate,
                    "weight_decay": 0.0,
                },
                "lr_scheduler": {
                    "_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                    "num_warmup_steps": base.warmup_steps(preset),
                },
                "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
                "clip_grad_norm": 1.0,
            },
        ),
        (
            "Training.",
            {
                "epochs": preset.recipe.epochs,
                "max_steps_per_epoch": None,
                "gradient_accumulation_steps": 1,
                "compile": False,
            },
        ),
        (
            _note(
                f"Logging, device and memory: {_hardware_text(preset)}, activation checkpointing "
                f"{'on' if preset.gradient_checkpointing else 'off'} (as the preset was sized). torchtune has no "
                "attention setting: it uses PyTorch's SDPA (flex attention for packed rows on a CUDA GPU).",
            ),
            {
                "metric_logger": {
                    "_component_": "torchtune.training.metric_logging.DiskLogger",
                    "log_dir": "${output_dir}/logs",
                },
                "log_every_n_steps": 1,
                "log_peak_memory_stats": not preset.on_cpu,  # CUDA memory statistics
                "device": device,
                "dtype": dtype,
                "enable_activation_checkpointing": preset.gradient_checkpointing,
                "enable_activation_offloading": False,
                "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
            },
        ),
    ]


def _qlora_note(lora_builder: str, own_builder: bool) -> str:
    """The model comment's paragraph on QLoRA: the LoRA builder's QLoRA twin, or that torchtune has none."""
    twin = QLORA_BUILDERS.get(lora_builder)
    name = lora_builder.rsplit(".", 1)[-1]
    if twin is None:
        return _note(
            f"QLoRA: torchtune has no QLoRA twin of {name}, so this file trains 16-bit LoRA: for QLoRA, use your "
            "model's qlora_ builder where torchtune has one."
        )
    keep = "" if own_builder else " (a replacement builder needs its qlora_ twin too)"
    return _note(
        f"QLoRA: {twin.rsplit('.', 1)[-1]} is {name} with quantize_base{keep}: the base model's linear weights in "
        "torchao's NF4 (4-bit NormalFloat, its block scales quantised again to 8 bits: double quantisation), not "
        "bitsandbytes; the LoRA weights and the computation in the recipe's dtype."
    )


def _dataset(preset: Preset) -> dict[str, Any]:
    """The dataset builder for the preset's data format, with its columns and where the loss is taken; an
    instruct_dataset for an unknown format."""
    fmt, every = preset.data_format, data.every_token(preset)
    source = {"source": base.DATA_PLACEHOLDER, "split": "train"}
    if fmt == "text":
        return {"_component_": f"{_DATASETS}.text_completion_dataset", **source, "column": "text", "packed": True}
    if fmt in data.CONVERSATIONS:
        reader = {
            "_component_": f"{_DATASETS}.chat_dataset",
            **source,
            "conversation_column": "messages" if fmt == "messages" else "conversations",
            "conversation_style": "openai" if fmt == "messages" else "sharegpt",
        }
    elif fmt == "alpaca":
        reader = {"_component_": f"{_DATASETS}.alpaca_dataset", **source, "column_map": _ALPACA}
    elif fmt is not None:
        prompt, answer = data.pair_columns(preset)
        reader = {
            "_component_": f"{_DATASETS}.instruct_dataset",
            **source,
            "column_map": {"input": prompt, "output": answer},
        }
    else:
        reader = {"_component_": f"{_DATASETS}.instruct_dataset", **source}
    return {**reader, "train_on_input": every, "packed": True}


_DATASETS = "torchtune.datasets"
_ALPACA = {"instruction": "instruction", "input": "input", "output": "output"}
FORMAT_NOTES = {
    "messages": "chat_dataset reads conversations in OpenAI's style (role/content turns in the messages column) "
    "and formats them with the tokenizer's chat format (torchtune has no role for tool turns: its tool results are "
    "ipython messages).",
    "sharegpt": "chat_dataset reads ShareGPT conversations (from/value turns in the conversations column); "
    "torchtune's ShareGPTToMessages knows the from values system, human and gpt only.",
    "alpaca": "alpaca_dataset reads Alpaca records (column_map: instruction, input, output) into the original "
    "Alpaca prompt ('Below is an instruction that describes a task...'), which torchtune applies whatever the "
    "tokenizer's prompt template, not the chat template LoRA Advisor renders them with.",
    "columns": "instruct_dataset reads {prompt}/{response} columns (column_map: {prompt} as input, {response} as "
    "output; {origin}) as a user turn and an assistant turn in the tokenizer's chat format, as LoRA "
    "Advisor renders the pair.",
    "prompt-completion": "instruct_dataset reads prompt/completion (column_map: prompt as input, completion as "
    "output) as a user turn and an assistant turn in the tokenizer's chat format: LoRA Advisor trains plain strings "
    "as raw text, and torchtune has no reader for that besides text_completion_dataset, which trains on the prompt "
    "too.",
    "text": "text_completion_dataset reads plain text (column text), each document ending with EOS and split across "
    "packed rows, as LoRA Advisor splits it.",
}
"""How torchtune's dataset builders read each data format."""


def _data_note(preset: Preset) -> str:
    """The data section's comment: what to fill in, the builder for the format and where the loss is taken."""
    opening = "Data: fill in your dataset; packed rows of tokenizer.max_seq_len tokens."
    fmt = preset.data_format
    if fmt is None:
        return opening
    if fmt == "text":
        loss = "The loss on every token (continued pretraining)."
    elif data.every_token(preset):
        loss = "train_on_input: the loss on every token, prompts too (continued pretraining)."
    else:
        loss = f"train_on_input false: the loss on {data.answer(preset)} only, as LoRA Advisor trains it."
    where = "source is a hub dataset id, or json (or csv, parquet) with data_files: your file."
    return _note(f"{opening} {where} {data.format_note(FORMAT_NOTES, preset)} {loss}")


def _hardware_text(preset: Preset) -> str:
    """Where the preset trains, in words."""
    return "a CPU in float32" if preset.on_cpu else "one CUDA GPU in bfloat16"


def _tokenizer_note(preset: Preset, own_builder: bool) -> str:
    """The tokenizer section's comment: what to fill in, the row length and the chat format."""
    template = PROMPT_TEMPLATES.get(base.model_family(preset) or "")
    if template is None:
        chat = "prompt_template is left to the tokenizer's default: set your model's chat format."
    elif own_builder:
        chat = f"prompt_template is {template[1]}."
    else:
        chat = f"prompt_template is {template[1]}: keep it with your model's tokenizer."
    return _note(f"Tokenizer: fill in its path (max_seq_len is the packed row length); {chat}")


def read_torchtune(fields: dict[str, Any]) -> dict[str, Any]:
    """The carried values from torchtune.yaml's fields (its o_proj is output_proj)."""
    model = fields["model"]
    attention = {("o_proj" if name == "output_proj" else name) for name in model.get("lora_attn_modules") or ()}
    mlp = bool(model.get("apply_lora_to_mlp"))
    if attention == set(ATTENTION_MODULES):
        targets = "all" if mlp else "attention"
    else:
        raise TypeError(f"lora_attn_modules {sorted(attention)}: LoRA Advisor's presets adapt all four or none")
    return {
        **base.adapter_values(model["lora_rank"], model["lora_alpha"], targets, model.get("lora_dropout")),
        "learning_rate": base.as_float(fields["optimizer"]["lr"]),
        "epochs": base.as_int(fields["epochs"]),
        "batch_size": base.as_int(fields["batch_size"]) * base.as_int(fields.get("gradient_accumulation_steps", 1)),
        "seq_len": base.as_int(fields["tokenizer"]["max_seq_len"]),
        "variant": base.variant_of({"dora": bool(model.get("use_dora"))}),
        "hardware": _hardware_of(fields["device"], fields["dtype"]),
        "gradient_checkpointing": bool(fields.get("enable_activation_checkpointing", False)),  # the recipe's default
        # torchtune's QLoRA builders are its LoRA builders with quantize_base: NF4 with double quantisation
        "quantize": "nf4" if _is_qlora(model) else None,
    }


def _is_qlora(model: dict[str, Any]) -> bool:
    """Whether a torchtune model section builds QLoRA: a qlora_ builder, or quantize_base set."""
    return str(model["_component_"]).rsplit(".", 1)[-1].startswith("qlora_") or bool(model.get("quantize_base"))


def _hardware_of(device: Any, dtype: Any) -> str:
    """'cpu' or 'gpu' from torchtune's device and dtype; TypeError for a pair no preset trains in."""
    for hardware, pair in DEVICES.items():
        if (str(device).split(":")[0], str(dtype)) == pair:
            return hardware
    raise TypeError(
        f"device {device} with dtype {dtype}: LoRA Advisor's presets train on a CPU in fp32 or CUDA in bf16"
    )


def is_torchtune(fields: dict[str, Any]) -> bool:
    """Whether the fields are a torchtune config (a model built from a `_component_`)."""
    return isinstance(fields.get("model"), dict) and "_component_" in fields["model"]


TORCHTUNE = base.ExportFormat(
    name="torchtune",
    tool="torchtune",
    file_name="torchtune.yaml",
    usage="tune run lora_finetune_single_device --config {file}",
    fill_in="dataset.source (your data), tokenizer.path, checkpointer.checkpoint_dir and checkpoint_files; "
    "recount lr_scheduler.num_warmup_steps for your data (its comment says how)",
    # no warm-up share: torchtune's warm-up is a step count, which needs the data's size
    carried=(*base.ADAPTER, *base.TRAINING, "variant", *base.HARDWARE_FIELDS, "quantize"),
    write=base.yaml_writer(torchtune_sections),
    read=read_torchtune,
    detect=is_torchtune,
    detect_order=10,
    refusal=torchtune_refusal,
    variants=("lora", "dora"),
    qlora_note="torchtune quantises with torchao's NF4 (its qlora_ model builders), not bitsandbytes.",
)
