"""LLaMA-Factory: llama-factory.yaml, run with `llamafactory-cli train`.

Key names from LLaMA-Factory's `hparams/finetuning_args.py` and `examples/train_lora/llama3_lora_sft.yaml`; the
variants are `use_rslora`, `use_dora`, `pissa_init` (with `pissa_iter` and `pissa_convert`) and `loraplus_lr_ratio`.
Checked against LLaMA-Factory 0.9.5: `hparams/model_args.py` (`flash_attn`, `disable_gradient_checkpointing`),
`hparams/parser.py` (`get_train_args`, unknown keys refused), `data/template.py` (the `llama2` and `smollm2`
templates), `QuantizationArguments` in `hparams/model_args.py` (`quantization_bit`, `quantization_method`,
`quantization_type`, `double_quantization`, which `model/model_utils/quantization.py` makes a BitsAndBytesConfig
computing in the training dtype) and transformers' `TrainingArguments` (`bf16`, `use_cpu`, `warmup_ratio`). A preset
that knows its data format gets a dataset_info.json beside the file, in the keys of `data/parser.py` (`DatasetAttr`:
`file_name`, `formatting`, `columns`, `tags`) and `data/converter.py`; `stage: pt` for plain text
(`data/processor/pretrain.py` reads the first prompt's text), `train_on_prompt` for continued pretraining on the rest
(`hparams/parser.py` takes it, and `neat_packing`, for sft only) and `template: empty` (`data/template.py`) for plain
prompt/completion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from advisor.exports import base, data
from advisor.presets import Preset
from tuner.defaults import LORAPLUS_LR_RATIO

TEMPLATES = {
    "llama2": ("llama2", "Llama-2-chat's [INST] format: the base model's tokenizer has no chat template"),
    "smollm2": ("smollm2", "SmolLM2-Instruct's own chat format"),
}
"""LLaMA-Factory's chat template for each model family (both registered in its `data/template.py`), and what it is."""


def llama_factory_sections(preset: Preset) -> list[base.Section]:
    """llama-factory.yaml's sections: model, method, dataset, output, train."""
    lora = preset.recipe.lora
    target = "all" if lora.targets == "all" else ",".join(lora.target_modules())
    checkpointing = (
        "on, as the memory budget assumed" if preset.gradient_checkpointing else "off, as the memory budget was sized"
    )
    if preset.on_cpu:
        precision = "float32 on the CPU: use_cpu true, bf16 false (transformers refuses bf16 without a GPU)."
    else:
        precision = "bf16 on one GPU (use_cpu false)."
    return [
        (
            base.note(
                "model, with PyTorch's SDPA attention ("
                + (
                    "stage pt packs documents into rows, without neat_packing, which LLaMA-Factory takes for sft only"
                    if _stage(preset) == "pt"
                    else "neat_packing below keeps packed examples apart under it with a block-diagonal mask"
                )
                + f"). Gradient checkpointing {checkpointing}: LLaMA-Factory turns it on unless "
                "disable_gradient_checkpointing is true." + _quantization_note(preset)
            ),
            {
                "model_name_or_path": base.model_or_placeholder(preset),
                "flash_attn": "sdpa",
                "disable_gradient_checkpointing": not preset.gradient_checkpointing,
                **(QLORA_KEYS if preset.recipe.quantize else {}),
            },
        ),
        (
            "method (lora_target: all = every linear layer but the output head) and the LoRA variant, if any",
            {
                "stage": _stage(preset),
                "do_train": True,
                "finetuning_type": "lora",
                "lora_rank": lora.rank,
                "lora_alpha": base.whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_target": target,
                **_VARIANT_KEYS.get(lora.variant, {}),
            },
        ),
        _dataset_section(preset),
        ("output", {"output_dir": f"saves/{preset.name}"}),
        (
            base.note(
                f"train: {precision} warmup_ratio (the warm-up's share of the steps) works with every "
                "transformers LLaMA-Factory 0.9.5 supports: transformers 5 warns that it is deprecated and reads it "
                "as a warmup_steps below 1, and transformers 4 reads warmup_steps as a count."
            ),
            {
                "per_device_train_batch_size": preset.recipe.batch_size,
                "gradient_accumulation_steps": 1,
                "learning_rate": preset.recipe.learning_rate,
                "num_train_epochs": float(preset.recipe.epochs),
                "lr_scheduler_type": "cosine",
                "warmup_ratio": preset.recipe.warmup_ratio,
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
                "bf16": not preset.on_cpu,
                "use_cpu": preset.on_cpu,
            },
        ),
    ]


QLORA_KEYS: dict[str, Any] = {
    "quantization_bit": 4,
    "quantization_method": "bnb",
    "quantization_type": "nf4",
    "double_quantization": True,
}
"""QLoRA in LLaMA-Factory's QuantizationArguments (`hparams/model_args.py`): bitsandbytes on the fly, NF4, double
quantisation; each is LLaMA-Factory's default but quantization_bit, and set all the same, as every export sets what
the preset says."""


def _quantization_note(preset: Preset) -> str:
    """The model comment's sentence on QLoRA (none for a 16-bit preset)."""
    if preset.recipe.quantize is None:
        return ""
    # with bf16 off, LLaMA-Factory picks the compute dtype by the device (patcher.py: infer_optim_dtype)
    compute = "bf16" if not preset.on_cpu else "float32 on a machine without a GPU (LLaMA-Factory picks it by device)"
    return (
        " quantization_bit 4 with bitsandbytes, NF4 and double_quantization: QLoRA, the base model's linear layers "
        f"in 4-bit NF4, computing in {compute}."
    )


def _stage(preset: Preset) -> str:
    """'pt' (pre-training: every token of each document) for plain text, else 'sft'."""
    return "pt" if preset.data_format == "text" else "sft"


def _dataset_section(preset: Preset) -> base.Section:
    """The dataset section: a dataset name to fill in for an unknown format, else the entry in the dataset_info.json
    written beside the file."""
    keys: dict[str, Any] = {"cutoff_len": preset.recipe.seq_len, "packing": True}
    fmt = preset.data_format
    if fmt is None:
        text = (
            "dataset: fill in your dataset (its name in data/dataset_info.json). "
            + _template_note(preset)
            + " neat_packing packs rows without attention across examples."
        )
        return base.note(text), {"dataset": base.DATA_PLACEHOLDER, **_template(preset), **keys, "neat_packing": True}
    if fmt == "text":
        loss = (
            "stage pt: the loss on every token (continued pretraining); documents are joined and cut into rows of "
            "cutoff_len tokens."
        )
    elif data.every_token(preset):
        loss = "stage sft with train_on_prompt: the loss on every token, prompts too (continued pretraining)."
    else:
        loss = f"stage sft: the loss on {data.answer(preset)} only (train_on_prompt false, LLaMA-Factory's default)."
    template = {"template": "empty"} if fmt == "prompt-completion" else _template(preset)
    parts = [
        f"dataset: {DATASET_NAME}, the entry in {DATASET_INFO} beside this file (dataset_dir . is this directory: "
        f"run llamafactory-cli in it); fill in its file_name, your data's path.",
        data.format_note(FORMAT_NOTES, preset),
        loss,
        *([] if fmt in ("prompt-completion", "text") else [_template_note(preset)]),
        *([] if fmt == "text" else ["neat_packing packs rows without attention across examples."]),
    ]
    text = " ".join(parts)
    keys |= {"neat_packing": True} if fmt != "text" else {}
    keys |= {"train_on_prompt": True} if data.every_token(preset) and fmt != "text" else {}
    return base.note(text), {"dataset": DATASET_NAME, "dataset_dir": ".", **template, **keys}


DATASET_NAME = "advisor_data"
"""The entry of the dataset_info.json written beside llama-factory.yaml, which its `dataset` names."""
DATASET_INFO = "dataset_info.json"
FORMAT_NOTES = {
    "messages": "Your data: conversations in a messages column, read with sharegpt formatting and OpenAI's "
    "role/content tags (LLaMA-Factory's data/README.md), tool turns as observations.",
    "sharegpt": "Your data: ShareGPT conversations, LLaMA-Factory's sharegpt formatting (from/value; human, gpt, "
    "system, observation, function_call): turns must alternate human (or observation) and gpt (or function_call) "
    "after an optional system turn, and a row with other from values is skipped with a warning.",
    "alpaca": "Your data: Alpaca records, LLaMA-Factory's alpaca formatting: the user turn is the instruction with "
    "the input on the next line (remove query where your records have no input).",
    "columns": "Your data: {prompt}/{response} columns, read with alpaca formatting, {prompt} as the instruction and "
    "{response} as the output ({origin}).",
    "prompt-completion": "Your data: prompt/completion as plain strings, read with alpaca formatting (prompt as the "
    "instruction, completion as the output) and template empty: the prompt followed by the completion as plain "
    "text, as LoRA Advisor trains them (the empty template adds no end-of-sequence token). Message-list prompts "
    "and completions need writing as a messages conversation.",
    "text": "Your data: plain text in a text column, read with alpaca formatting as the prompt, which stage pt trains "
    "on as documents.",
}
"""What each data format is to LLaMA-Factory."""
_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output"},
    "prompt-completion": {"prompt": "prompt", "response": "completion"},
    "text": {"prompt": "text"},
}
_TAGS = {
    "messages": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
        "observation_tag": "tool",
    },
    "sharegpt": {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "system_tag": "system",
        "observation_tag": "observation",
        "function_tag": "function_call",
    },
}


def dataset_entry(preset: Preset) -> dict[str, Any]:
    """The dataset_info.json entry for the preset's data format: file_name, formatting, columns and tags, as
    LLaMA-Factory's data/parser.py DatasetAttr reads them."""
    fmt = preset.data_format or ""
    if fmt in _TAGS:
        column = "messages" if fmt == "messages" else "conversations"
        return {
            "file_name": base.DATA_PLACEHOLDER,
            "formatting": "sharegpt",
            "columns": {"messages": column},
            "tags": _TAGS[fmt],
        }
    if fmt == "columns":
        prompt, response = data.pair_columns(preset)
        return {
            "file_name": base.DATA_PLACEHOLDER,
            "formatting": "alpaca",
            "columns": {"prompt": prompt, "response": response},
        }
    return {"file_name": base.DATA_PLACEHOLDER, "formatting": "alpaca", "columns": _COLUMNS[fmt]}


def write_llama_factory(preset: Preset, path: Path, header: str) -> list[Path]:
    """llama-factory.yaml, and dataset_info.json beside it for a preset that knows its data format."""
    written = base.yaml_writer(llama_factory_sections)(preset, path, header)
    if preset.data_format is not None:
        info = path.with_name(DATASET_INFO)
        info.write_text(json.dumps({DATASET_NAME: dataset_entry(preset)}, indent=2) + "\n", encoding="utf-8")
        written.append(info)
    return written


def _template(preset: Preset) -> dict[str, Any]:
    """The template key for the preset's model family; none for another model (LLaMA-Factory then reads the
    tokenizer's own chat template)."""
    family = base.model_family(preset)
    return {"template": TEMPLATES[family][0]} if family in TEMPLATES else {}


def _template_note(preset: Preset) -> str:
    family = base.model_family(preset)
    if family not in TEMPLATES:
        return "With no template, LLaMA-Factory reads your model's own chat template from its tokenizer."
    name, what = TEMPLATES[family]
    return f"template: LLaMA-Factory's {name}, {what}."


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
        # LLaMA-Factory's own defaults where a file leaves them out: on a GPU, gradient checkpointing on
        "hardware": "cpu" if fields.get("use_cpu") else "gpu",
        "gradient_checkpointing": not fields.get("disable_gradient_checkpointing", False),
        "quantize": _quantize_of(fields),
    }


def _quantize_of(fields: dict[str, Any]) -> str | None:
    """'nf4' for LLaMA-Factory's 4-bit bitsandbytes NF4 with double quantisation (its defaults where a key is left
    out), None without quantization_bit; TypeError for any other quantisation."""
    bits = fields.get("quantization_bit")
    if bits is None:
        return None
    settings = {key: fields.get(key, default) for key, default in QLORA_KEYS.items()}  # the rest default as ours
    settings["quantization_bit"] = base.as_int(bits)
    if settings != QLORA_KEYS:
        raise TypeError(f"{settings}: LoRA Advisor's QLoRA is 4-bit bitsandbytes NF4 with double quantisation")
    return "nf4"


def is_llama_factory(fields: dict[str, Any]) -> bool:
    """Whether the fields are a LLaMA-Factory config (it alone has finetuning_type)."""
    return "finetuning_type" in fields


LLAMA_FACTORY = base.ExportFormat(
    name="llama-factory",
    tool="LLaMA-Factory",
    file_name="llama-factory.yaml",
    usage="llamafactory-cli train {file}",
    fill_in="dataset (its name in your dataset_info.json)",
    fill_in_data=f"file_name in {DATASET_INFO} beside this file (your data's path)",
    carried=base.EVERY_FIELD,
    write=write_llama_factory,
    read=read_llama_factory,
    detect=is_llama_factory,
    detect_order=20,
    variants=("lora", "rslora", "dora", "pissa", "loraplus"),
    variant_notes={"pissa": "pissa_convert saves the plain-LoRA form in output_dir/pissa_converted."},
)
