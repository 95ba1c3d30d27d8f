"""Export a preset as another tool's own config, and read such a config back (pure: no torch; PEFT's writer
imports peft inside).

Each export directory holds the tool's file, with that tool's key names and a comment header saying where the
numbers come from and how to run it, and our own preset.yaml, so the full preset travels with it. The key names
were checked against each tool's source: PEFT's `LoraConfig`; axolotl's pydantic schema
(`src/axolotl/utils/schemas/{config,peft,training}.py`); LLaMA-Factory's `hparams/finetuning_args.py` and
`examples/train_lora/llama3_lora_sft.yaml`; TRL's `SFTConfig`, `ModelConfig` and `ScriptArguments` (`trl sft`);
torchtune's `recipes/configs/llama3_2/1B_lora_single_device.yaml` and LoRA builders; LitGPT's `litgpt/args.py`
and `config_hub/finetune/llama-3.2-1B/lora.yaml`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.presets import Preset, write_preset
from tuner.errors import AdvisorError
from tuner.models import hub_id
from tuner.paper import PAPER
from tuner.settings import ATTENTION_MODULES, MLP_MODULES

FORMATS = ("peft", "axolotl", "llama-factory", "trl", "torchtune", "litgpt")
CONFIG_FILES = {
    "peft": "adapter_config.json",
    "axolotl": "axolotl.yaml",
    "llama-factory": "llama-factory.yaml",
    "trl": "trl-sft.yaml",
    "torchtune": "torchtune.yaml",
    "litgpt": "litgpt-lora.yaml",
}
"""The file each format's export writes beside preset.yaml."""
TOOL_NAMES = {
    "peft": "PEFT",
    "axolotl": "axolotl",
    "llama-factory": "LLaMA-Factory",
    "trl": "TRL",
    "torchtune": "torchtune",
    "litgpt": "LitGPT",
}
USAGE = {
    "peft": "LoraConfig.from_pretrained({dir}), then get_peft_model(model, config) (see README.md)",
    "axolotl": "axolotl train {file}",
    "llama-factory": "llamafactory-cli train {file}",
    "trl": "trl sft --config {file}",
    "torchtune": "tune run lora_finetune_single_device --config {file}",
    "litgpt": "litgpt finetune_lora --config {file}",
}
"""How to train with the exported file ({file}: its path, {dir}: its directory)."""
FILL_IN = {
    "peft": "nothing in adapter_config.json; your training loop takes the learning rate, epochs and batch "
    "from preset.yaml",
    "axolotl": "datasets (path and type of your data)",
    "llama-factory": "dataset (its name in your dataset_info.json) and template (your model's chat template)",
    "trl": "dataset_name (a hub dataset id or a local path)",
    "torchtune": "dataset.source (your data), tokenizer.path, checkpointer.checkpoint_dir and checkpoint_files, "
    "lr_scheduler.num_warmup_steps (10% of your optimizer steps)",
    "litgpt": "data.init_args.json_path (your data); run `litgpt download MODEL` for checkpoint_dir",
}
_ADAPTER = ("rank", "alpha", "targets", "dropout")
_TRAINING = ("learning_rate", "epochs", "batch_size", "seq_len")
CARRIED = {
    "peft": _ADAPTER,
    "axolotl": (*_ADAPTER, *_TRAINING, "warmup_ratio"),
    "llama-factory": (*_ADAPTER, *_TRAINING, "warmup_ratio"),
    "trl": (*_ADAPTER, *_TRAINING, "warmup_ratio"),
    "torchtune": (*_ADAPTER, *_TRAINING),  # its warm-up is a step count, which needs the data's size
    "litgpt": (*_ADAPTER, *_TRAINING, "warmup_ratio"),
}
"""The preset fields each format's file carries (and `read_export` returns)."""
MODEL_PLACEHOLDER = "REPLACE_WITH_BASE_MODEL"
DATA_PLACEHOLDER = "REPLACE_WITH_YOUR_DATASET"

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


def carried_fields(preset: Preset, fmt: str) -> dict[str, Any]:
    """The preset's values for the fields a format carries (what reading its export back should give)."""
    values = {
        "rank": preset.recipe.lora.rank,
        "alpha": preset.recipe.lora.alpha,
        "targets": preset.recipe.lora.targets,
        "dropout": preset.recipe.lora.dropout,
        "learning_rate": preset.recipe.learning_rate,
        "epochs": preset.recipe.epochs,
        "batch_size": preset.recipe.batch_size,
        "seq_len": preset.recipe.seq_len,
        "warmup_ratio": preset.recipe.warmup_ratio,
    }
    return {name: values[name] for name in CARRIED[_check_format(fmt)]}


def export_preset(preset: Preset, fmt: str, out_dir: Path, origin: str) -> list[Path]:
    """Write the preset as FMT's own config in OUT_DIR, with preset.yaml beside it; returns the files written."""
    _check_format(fmt)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AdvisorError(f"--out {out_dir} is a file, not a directory")
    if fmt == "torchtune" and preset.recipe.lora.targets == "mlp":
        raise AdvisorError(
            "torchtune's LoRA builders need at least one attention module (an empty lora_attn_modules is refused), "
            "so an MLP-only preset cannot be exported to torchtune"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / CONFIG_FILES[fmt]
    header = export_header(preset, fmt, origin, config_path.name)
    written: list[Path] = []
    if fmt == "peft":
        written.append(_write_peft(preset, out_dir))
        readme = out_dir / "README.md"
        readme.write_text(_peft_readme(preset, header), encoding="utf-8")
        written.append(readme)
    else:
        builders = {
            "axolotl": _axolotl,
            "llama-factory": _llama_factory,
            "trl": _trl,
            "torchtune": _torchtune,
            "litgpt": _litgpt,
        }
        sections = builders[fmt](preset)
        config_path.write_text(_yaml_document(header, sections), encoding="utf-8")
        written.append(config_path)
    preset_header = (
        export_header(preset, fmt, origin, config_path.name, beside=False)
        + f"\n\nThis file is LoRA Advisor's own preset, the full form of {config_path.name};\n"
        "`advisor export --preset preset.yaml --format FORMAT --out DIR` exports it for another tool."
    )
    written.append(write_preset(preset, out_dir / "preset.yaml", preset_header))
    return written


def export_header(preset: Preset, fmt: str, origin: str, file_name: str, beside: bool = True) -> str:
    """The comment header of an exported file: by whom, from what, where the numbers come from, how to use it.

    With `beside`, it ends by pointing at preset.yaml (every file but preset.yaml itself)."""
    lora = preset.recipe.lora
    budget = f", sized for {preset.memory_budget}" if preset.memory_budget else ""
    model = hub_id(preset.model) or f"{MODEL_PLACEHOLDER} (the preset names no model: fill in yours)"
    recipe = preset.recipe
    lines = [
        f"Exported by LoRA Advisor for {TOOL_NAMES[fmt]} from {origin}.",
        f"Preset {preset.name} ({preset.task}): LoRA r={lora.rank}, alpha={lora.alpha:g} on {lora.targets} linear "
        f"layers, dropout {lora.dropout:g}; learning rate {recipe.learning_rate:g} (cosine, {recipe.warmup_ratio:.0%} "
        f"warm-up), {recipe.epochs} epochs, batch {recipe.batch_size} x {recipe.seq_len} tokens{budget}.",
        f"Base model: {model}.",
        f"Numbers ({preset.source}): {preset.notes or 'no notes given.'}",
        f"Research: {PAPER}: alpha = 2r, all linear layers, rank 256 where memory allows, at least 4 epochs of "
        "instruction tuning, weight decay 0, gradient clipping 1.0. The paper trained with decoupled LionW; these "
        "settings assume AdamW, every tool's default.",
        "Use: " + USAGE[fmt].format(file=file_name, dir="this directory"),
        "Fill in before training: " + FILL_IN[fmt] + ".",
    ]
    if beside:
        lines.append("The full preset, with its provenance, is beside this file in preset.yaml.")
    return "\n".join(
        textwrap.fill(line, width=110, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        for line in lines
    )


# --- writers ---------------------------------------------------------------------------------------------


def _whole(value: float) -> int | float:
    """An integral float as an int (most tools type alpha as int), else the float."""
    return int(value) if float(value).is_integer() else value


def _yaml_document(header: str, sections: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A YAML file: the header as '#' lines, then each section's comment and its keys."""
    import yaml

    parts = [_comment(header)]
    for note, mapping in sections:
        body = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True, width=110, default_flow_style=False)
        parts.append("\n" + (_comment(note) if note else "") + body)
    return "".join(parts)


def _comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def _model_or_placeholder(preset: Preset) -> str:
    return hub_id(preset.model) or MODEL_PLACEHOLDER


def _write_peft(preset: Preset, out_dir: Path) -> Path:
    """adapter_config.json, written by PEFT's own LoraConfig.save_pretrained."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise AdvisorError("the PEFT export needs peft: pip install peft") from None
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=preset.recipe.lora.rank,
        lora_alpha=_whole(preset.recipe.lora.alpha),
        lora_dropout=preset.recipe.lora.dropout,
        target_modules=preset.recipe.lora.target_modules(),
        bias="none",
        base_model_name_or_path=hub_id(preset.model),
    )
    config.save_pretrained(str(out_dir))
    return out_dir / CONFIG_FILES["peft"]


def _peft_readme(preset: Preset, header: str) -> str:
    model = hub_id(preset.model) or MODEL_PLACEHOLDER
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


def _axolotl(preset: Preset) -> list[tuple[str, dict[str, Any]]]:
    lora = preset.recipe.lora
    adapter: dict[str, Any] = {
        "adapter": "lora",
        "lora_r": lora.rank,
        "lora_alpha": _whole(lora.alpha),
        "lora_dropout": lora.dropout,
    }
    if lora.targets == "all":
        adapter["lora_target_linear"] = True
    else:
        adapter["lora_target_modules"] = list(lora.target_modules())
    return [
        ("Base model (hub id or local path).", {"base_model": _model_or_placeholder(preset)}),
        ("LoRA adapter (lora_target_linear: every linear layer but the output head).", adapter),
        (
            "Data: fill in your dataset (type: alpaca, chat_template, ...). Rows are packed to sequence_len;\n"
            "flash_attention keeps packed examples from attending to each other (needs flash-attn; else\n"
            "sdp_attention: true).",
            {
                "datasets": [{"path": DATA_PLACEHOLDER, "type": "alpaca"}],
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


def _llama_factory(preset: Preset) -> list[tuple[str, dict[str, Any]]]:
    lora = preset.recipe.lora
    target = "all" if lora.targets == "all" else ",".join(lora.target_modules())
    return [
        ("model", {"model_name_or_path": _model_or_placeholder(preset)}),
        (
            "method (lora_target: all = every linear layer but the output head)",
            {
                "stage": "sft",
                "do_train": True,
                "finetuning_type": "lora",
                "lora_rank": lora.rank,
                "lora_alpha": _whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_target": target,
            },
        ),
        (
            "dataset: fill in your dataset (its name in data/dataset_info.json) and your model's template.\n"
            "neat_packing packs rows without attention across examples.",
            {
                "dataset": DATA_PLACEHOLDER,
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


def _trl(preset: Preset) -> list[tuple[str, dict[str, Any]]]:
    lora = preset.recipe.lora
    return [
        ("Model (trl.ModelConfig).", {"model_name_or_path": _model_or_placeholder(preset)}),
        (
            "LoRA (trl.ModelConfig; get_peft_config builds peft's LoraConfig from these).",
            {
                "use_peft": True,
                "lora_r": lora.rank,
                "lora_alpha": _whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_target_modules": lora.target_modules(),
            },
        ),
        (
            "Data (trl.ScriptArguments, SFTConfig): fill in dataset_name. With packing, max_length is the row length.",
            {"dataset_name": DATA_PLACEHOLDER, "max_length": preset.recipe.seq_len, "packing": True},
        ),
        (
            "Training (trl.SFTConfig). transformers 5 dropped warmup_ratio: warmup_steps below 1 is the share of\n"
            "the steps (with transformers 4, write warmup_ratio instead). SFTConfig trains in bf16 by default;\n"
            "on a CPU add use_cpu: true.",
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
            },
        ),
    ]


def _torchtune_family(model: str | None) -> dict[str, str] | None:
    """torchtune's builders for the model when we know them (the paper's Llama-2-7B), else None."""
    if model and "llama-2-7b" in model.lower():
        return _TORCHTUNE_LLAMA2_7B
    return None


def _torchtune(preset: Preset) -> list[tuple[str, dict[str, Any]]]:
    lora = preset.recipe.lora
    family = _torchtune_family(preset.model)
    builder = family or _TORCHTUNE_EXAMPLE
    attention = [("output_proj" if name == "o_proj" else name) for name in ATTENTION_MODULES]
    model_note = (
        f"Model: torchtune's own builder for {preset.model}."
        if family
        else f"Model: torchtune has no builder for {preset.model or 'an unnamed model'}; Llama 3.2 1B's builder is an\n"
        "example: replace _component_ (and the tokenizer and checkpointer.model_type) with your model's.\n"
        "torchtune names o_proj output_proj."
    )
    return [
        ("Where checkpoints and logs go.", {"output_dir": f"/tmp/torchtune/{preset.name}"}),
        (
            model_note,
            {
                "model": {
                    "_component_": builder["model"],
                    "lora_attn_modules": attention,
                    "apply_lora_to_mlp": lora.targets in ("mlp", "all"),
                    "apply_lora_to_output": False,
                    "lora_rank": lora.rank,
                    "lora_alpha": _whole(lora.alpha),
                    "lora_dropout": lora.dropout,
                }
            },
        ),
        (
            "Tokenizer: fill in its path (max_seq_len is the packed row length).",
            {
                "tokenizer": {
                    "_component_": builder["tokenizer"],
                    "path": f"REPLACE_WITH_CHECKPOINT_DIR/{builder['tokenizer_file']}",
                    "max_seq_len": preset.recipe.seq_len,
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
            "Data: fill in your dataset; packed rows of tokenizer.max_seq_len tokens.",
            {
                "dataset": {
                    "_component_": "torchtune.datasets.instruct_dataset",
                    "source": DATA_PLACEHOLDER,
                    "split": "train",
                    "train_on_input": False,
                    "packed": True,
                },
                "seed": None,
                "shuffle": True,
                "batch_size": preset.recipe.batch_size,
            },
        ),
        (
            "Optimizer and schedule. num_warmup_steps is a step count, not a share: set it to\n"
            f"{preset.recipe.warmup_ratio:.0%} of your optimizer steps (epochs x packed rows / batch_size).",
            {
                "optimizer": {
                    "_component_": "torch.optim.AdamW",
                    "lr": preset.recipe.learning_rate,
                    "weight_decay": 0.0,
                },
                "lr_scheduler": {
                    "_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                    "num_warmup_steps": 100,
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
            "Logging, device and memory.",
            {
                "metric_logger": {
                    "_component_": "torchtune.training.metric_logging.DiskLogger",
                    "log_dir": "${output_dir}/logs",
                },
                "log_every_n_steps": 1,
                "log_peak_memory_stats": True,
                "device": "cuda",
                "dtype": "bf16",
                "enable_activation_checkpointing": False,
                "enable_activation_offloading": False,
                "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
            },
        ),
    ]


def _litgpt(preset: Preset) -> list[tuple[str, dict[str, Any]]]:
    lora = preset.recipe.lora
    attention = lora.targets in ("attention", "all")
    model = hub_id(preset.model)
    # LitGPT's warm-up fraction is a share of one epoch; ours is a share of all steps.
    warmup_fraction = round(min(1.0, preset.recipe.warmup_ratio * preset.recipe.epochs), 10)
    return [
        (
            "The model as `litgpt download HUB_ID` stores it.",
            {"checkpoint_dir": f"checkpoints/{model or MODEL_PLACEHOLDER}", "out_dir": f"out/finetune/{preset.name}"},
        ),
        ("bf16-true keeps the weights in bfloat16 (32-true on a CPU).", {"precision": "bf16-true", "devices": 1}),
        (
            "LoRA: query, key, value and projection are attention's q/k/v/o_proj; lora_mlp the MLP.",
            {
                "lora_r": lora.rank,
                "lora_alpha": _whole(lora.alpha),
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
                    "init_args": {"json_path": DATA_PLACEHOLDER, "val_split_fraction": 0.05},
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


# --- readers ---------------------------------------------------------------------------------------------


def detect_format(path: Path | str) -> tuple[str, Path]:
    """Which format an exported file (or a directory holding one) is in, and the file; AdvisorError otherwise."""
    path = Path(path)
    if path.is_dir():
        for fmt in FORMATS:
            if (path / CONFIG_FILES[fmt]).is_file():
                return fmt, path / CONFIG_FILES[fmt]
        raise AdvisorError(f"{path} holds none of {', '.join(CONFIG_FILES.values())}")
    fields = _load(path)
    return _format_of(fields, path), path


def read_export(path: Path | str) -> dict[str, Any]:
    """The preset fields an exported file carries (see CARRIED), read back with the format's own key names."""
    fmt, file = detect_format(path)
    fields = _load(file)
    readers = {
        "peft": _read_peft,
        "axolotl": _read_axolotl,
        "llama-factory": _read_llama_factory,
        "trl": _read_trl,
        "torchtune": _read_torchtune,
        "litgpt": _read_litgpt,
    }
    try:
        values = readers[fmt](fields)
    except KeyError as missing:
        raise AdvisorError(f"{file} ({TOOL_NAMES[fmt]}) has no {missing.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise AdvisorError(f"{file} ({TOOL_NAMES[fmt]}): {error}") from None
    return {name: values[name] for name in CARRIED[fmt]}


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AdvisorError(f"cannot read {path}: {error}") from None
    try:
        fields = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise AdvisorError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    if not isinstance(fields, dict):
        raise AdvisorError(f"{path} does not hold a mapping of settings")
    return fields


def _format_of(fields: dict[str, Any], path: Path) -> str:
    if "peft_type" in fields:
        return "peft"
    if isinstance(fields.get("model"), dict) and "_component_" in fields["model"]:
        return "torchtune"
    if "finetuning_type" in fields:
        return "llama-factory"
    if "adapter" in fields and "lora_r" in fields:
        return "axolotl"
    if "use_peft" in fields:
        return "trl"
    if "lora_query" in fields or "checkpoint_dir" in fields:
        return "litgpt"
    raise AdvisorError(f"cannot tell which tool {path} is for: none of {', '.join(TOOL_NAMES.values())}'s keys")


def _float(value: Any) -> float:
    """A number as float, also from a string such as '1e-4' (which YAML 1.1 does not read as a number)."""
    if isinstance(value, bool):
        raise TypeError(f"a number, got {value!r}")
    return float(value)


def _int(value: Any) -> int:
    number = _float(value)
    if not number.is_integer():
        raise TypeError(f"a whole number, got {value!r}")
    return int(number)


def _targets(names: Any) -> str:
    """'attention', 'mlp' or 'all' from a module list, a comma-separated string, 'all-linear' or 'all'."""
    if isinstance(names, str):
        if names.strip() in ("all-linear", "all"):
            return "all"
        names = [name.strip() for name in names.split(",")]
    chosen = set(names or ())
    sets = {
        "attention": set(ATTENTION_MODULES),
        "mlp": set(MLP_MODULES),
        "all": set(ATTENTION_MODULES) | set(MLP_MODULES),
    }
    for targets, modules in sets.items():
        if chosen == modules:
            return targets
    raise TypeError(f"target modules {sorted(chosen)}: not attention, mlp or all of a Llama-style layer")


def _adapter(rank: Any, alpha: Any, targets: str, dropout: Any) -> dict[str, Any]:
    return {"rank": _int(rank), "alpha": _float(alpha), "targets": targets, "dropout": _float(dropout or 0.0)}


def _read_peft(fields: dict[str, Any]) -> dict[str, Any]:
    return _adapter(fields["r"], fields["lora_alpha"], _targets(fields["target_modules"]), fields.get("lora_dropout"))


def _read_axolotl(fields: dict[str, Any]) -> dict[str, Any]:
    targets = "all" if fields.get("lora_target_linear") else _targets(fields["lora_target_modules"])
    return {
        **_adapter(fields["lora_r"], fields["lora_alpha"], targets, fields.get("lora_dropout")),
        "learning_rate": _float(fields["learning_rate"]),
        "epochs": _int(fields["num_epochs"]),
        "batch_size": _int(fields["micro_batch_size"]) * _int(fields.get("gradient_accumulation_steps", 1)),
        "seq_len": _int(fields["sequence_len"]),
        "warmup_ratio": _float(fields.get("warmup_ratio", 0.0)),
    }


def _read_llama_factory(fields: dict[str, Any]) -> dict[str, Any]:
    rank = _int(fields["lora_rank"])
    alpha = fields.get("lora_alpha") or 2 * rank  # LLaMA-Factory's default: lora_rank * 2
    return {
        **_adapter(rank, alpha, _targets(fields.get("lora_target", "all")), fields.get("lora_dropout")),
        "learning_rate": _float(fields["learning_rate"]),
        "epochs": _int(fields["num_train_epochs"]),
        "batch_size": _int(fields["per_device_train_batch_size"]) * _int(fields.get("gradient_accumulation_steps", 1)),
        "seq_len": _int(fields["cutoff_len"]),
        "warmup_ratio": _float(fields.get("warmup_ratio", 0.0)),
    }


def _read_trl(fields: dict[str, Any]) -> dict[str, Any]:
    warmup = _float(fields.get("warmup_ratio", fields.get("warmup_steps", 0.0)))
    if warmup >= 1:
        raise TypeError(f"warmup_steps {warmup:g} is a step count; only a share (below 1) maps to a warm-up ratio")
    return {
        **_adapter(
            fields["lora_r"], fields["lora_alpha"], _targets(fields["lora_target_modules"]), fields.get("lora_dropout")
        ),
        "learning_rate": _float(fields["learning_rate"]),
        "epochs": _int(fields["num_train_epochs"]),
        "batch_size": _int(fields["per_device_train_batch_size"]) * _int(fields.get("gradient_accumulation_steps", 1)),
        "seq_len": _int(fields["max_length"]),
        "warmup_ratio": warmup,
    }


def _read_torchtune(fields: dict[str, Any]) -> dict[str, Any]:
    model = fields["model"]
    attention = {("o_proj" if name == "output_proj" else name) for name in model.get("lora_attn_modules") or ()}
    mlp = bool(model.get("apply_lora_to_mlp"))
    if attention == set(ATTENTION_MODULES):
        targets = "all" if mlp else "attention"
    else:
        raise TypeError(f"lora_attn_modules {sorted(attention)}: LoRA Advisor's presets adapt all four or none")
    return {
        **_adapter(model["lora_rank"], model["lora_alpha"], targets, model.get("lora_dropout")),
        "learning_rate": _float(fields["optimizer"]["lr"]),
        "epochs": _int(fields["epochs"]),
        "batch_size": _int(fields["batch_size"]) * _int(fields.get("gradient_accumulation_steps", 1)),
        "seq_len": _int(fields["tokenizer"]["max_seq_len"]),
    }


def _read_litgpt(fields: dict[str, Any]) -> dict[str, Any]:
    flags = {name: bool(fields.get(f"lora_{name}")) for name in ("query", "key", "value", "projection", "mlp")}
    attention = [flags[name] for name in ("query", "key", "value", "projection")]
    if all(attention):
        targets = "all" if flags["mlp"] else "attention"
    elif not any(attention) and flags["mlp"]:
        targets = "mlp"
    else:
        raise TypeError(f"LoRA flags {flags}: LoRA Advisor's presets adapt all attention projections or none")
    train = fields["train"]
    epochs = _int(train["epochs"])
    optimizer = fields.get("optimizer")
    # Recent LitGPT keeps the learning rate with the optimizer; older versions in train.learning_rate.
    rate = optimizer["init_args"]["lr"] if isinstance(optimizer, dict) else train["learning_rate"]
    fraction = train.get("lr_warmup_fraction")
    return {
        **_adapter(fields["lora_r"], fields["lora_alpha"], targets, fields.get("lora_dropout")),
        "learning_rate": _float(rate),
        "epochs": epochs,
        "batch_size": _int(train["global_batch_size"]),
        "seq_len": _int(train["max_seq_length"]),
        "warmup_ratio": round(_float(fraction) / epochs, 10) if fraction is not None else 0.0,
    }


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise AdvisorError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return fmt
