"""LLaMA-Factory's check: each llama-factory.yaml through `llamafactory-cli train`'s own argument parsing.

Run inside LLaMA-Factory's virtual environment: `python scripts/export_checks/check_llama_factory.py JOBS.json`.
The file is read as `llamafactory-cli train FILE` reads it (`hparams.parser.read_args`: OmegaConf), parsed by
`get_train_args` with unknown keys refused (ALLOW_EXTRA_ARGS unset), and its template looked up in LLaMA-Factory's
template registry, as `get_template_and_fix_tokenizer` does before training. The values come back from the
argument objects LLaMA-Factory built; the quantisation from the BitsAndBytesConfig its `configure_quantization`
builds from them (QLoRA), as loading the model would.

For a preset that knows its data format, the dataset_info.json beside the file is read by LLaMA-Factory's own
`data.parser.get_dataset_list` (the entry the file's `dataset` names, in its `dataset_dir`), and the job's example
record goes through the converter for its formatting (`data.converter.get_dataset_converter`), as loading the
data file would; where the loss is taken is read from the stage and train_on_prompt.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any
from unittest import mock

import common

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}
"""A Llama-style layer's linear modules, to name a lora_target list the way the preset does."""


def targets_of(lora_target: list[str]) -> str:
    """'all', 'attention' or 'mlp' for LLaMA-Factory's parsed lora_target, else the names as given."""
    if lora_target == ["all"]:
        return "all"
    chosen = set(lora_target)
    named = {"attention": ATTENTION, "mlp": MLP, "all": ATTENTION | MLP}
    return next((name for name, modules in named.items() if chosen == modules), ",".join(lora_target))


STUB_SPEC = importlib.machinery.ModuleSpec("torchaudio", None)
"""The spec of the empty torchaudio stub_torchaudio puts in place."""


def stub_torchaudio() -> list[str]:
    """An empty torchaudio where none is installed, so that LLaMA-Factory's template registry imports; a note."""
    stubbed = getattr(sys.modules.get("torchaudio"), "__spec__", None) is STUB_SPEC
    if not stubbed and importlib.util.find_spec("torchaudio") is not None:
        return []
    stub = types.ModuleType("torchaudio")
    stub.__spec__ = STUB_SPEC
    sys.modules["torchaudio"] = stub
    return [
        "torchaudio absent: an empty module stands in for it (llamafactory.data.mm_plugin imports it at the top, "
        "for audio inputs only); nothing of it is used by argument parsing or the template lookup"
    ]


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Parse one export as `llamafactory-cli train` does; the values its argument objects hold."""
    import torch
    import transformers.training_args
    from llamafactory.hparams import get_train_args

    notes = stub_torchaudio()
    from llamafactory.data.template import TEMPLATES

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(sys, "argv", ["llamafactory-cli", job["file"]]))
        stack.enter_context(contextlib.chdir(job["dir"]))  # output_dir is relative to where training starts
        os.environ.pop("ALLOW_EXTRA_ARGS", None)  # unknown keys are refused
        if job["expected"]["hardware"] == "gpu" and not torch.cuda.is_available():
            stack.enter_context(
                mock.patch.object(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
            )
            notes.append(
                "no CUDA here: patched transformers.training_args.is_torch_bf16_gpu_available to True (the check in "
                "TrainingArguments.__post_init__ that refuses bf16 without a GPU)"
            )
        model_args, data_args, training_args, finetuning_args, _ = get_train_args()  # reads sys.argv's YAML
        data, said = data_values(job, data_args, finetuning_args.stage)  # dataset_dir is relative to job["dir"]
    notes += said
    quantize, said = quantization(job, model_args)
    notes += said

    if data_args.template is not None and data_args.template not in TEMPLATES:
        raise ValueError(f"Template {data_args.template} does not exist.")  # get_template_and_fix_tokenizer's refusal
    # transformers 5 copies warmup_ratio into warmup_steps (a share when below 1), which is what the Trainer uses
    warmup = training_args.warmup_steps
    warmup_ratio = warmup if 0 < warmup < 1 else (training_args.warmup_ratio or 0.0)
    if training_args.bf16:
        precision = "bf16"
    elif training_args.fp16:
        precision = "fp16"
    else:
        precision = "fp32"
    values = {
        "learning_rate": training_args.learning_rate,
        "rank": finetuning_args.lora_rank,
        "alpha": finetuning_args.lora_alpha,
        "dropout": finetuning_args.lora_dropout,
        "targets": targets_of(finetuning_args.lora_target),
        "epochs": training_args.num_train_epochs,
        "batch_size": training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps,
        # with packing, DataArguments takes 1 off cutoff_len and the packer pads each row to cutoff_len + 1
        "seq_len": data_args.cutoff_len + 1 if data_args.packing else data_args.cutoff_len,
        "warmup_ratio": warmup_ratio,
        "hardware": "cpu" if training_args.use_cpu else "gpu",
        "precision": precision,
        "gradient_checkpointing": bool(
            training_args.gradient_checkpointing or not model_args.disable_gradient_checkpointing
        ),
        "family": data_args.template,
        "quantize": quantize,
        **data,
    }
    if data_args.template == "empty":  # plain prompt/completion: no chat format, by design
        del values["family"]
        notes.append("template empty: the prompt and completion as plain text (no chat format, no family)")
    if finetuning_args.lora_target != ["all"]:
        values["target_modules"] = list(finetuning_args.lora_target)
    notes.append(
        f"attention: flash_attn={model_args.flash_attn}; device: {training_args.device}; compute dtype: "
        f"{model_args.compute_dtype} (None: LLaMA-Factory picks it when the model loads, float32 on a CPU)"
    )
    if finetuning_args.lora_target == ["all"]:
        notes.append("lora_target all: LLaMA-Factory names the linear layers (all but the head) when the model loads")
    if data_args.packing:
        notes.append(
            f"packed rows of cutoff_len + 1 = {data_args.cutoff_len + 1} tokens (packing takes 1 off cutoff_len)"
        )
    notes.append(
        f"warm-up read as a ratio (warmup_steps {warmup!r}, warmup_ratio {training_args.warmup_ratio!r}); "
        "family is the template name"
    )
    return values, notes


def quantization(job: dict[str, Any], model_args: Any) -> tuple[str | None, list[str]]:
    """The quantisation LLaMA-Factory would load the model with, from its own configure_quantization (given a model
    config that names no quantisation and no dtype), and a note on it."""
    from llamafactory.extras.misc import infer_optim_dtype
    from llamafactory.model.model_utils.quantization import configure_quantization

    model_args = copy.copy(model_args)  # the values read back elsewhere stay as get_train_args left them
    if model_args.compute_dtype is None:  # bf16 off: patch_config picks it by the device when the model loads
        model_args.compute_dtype = infer_optim_dtype(model_dtype=None)
    init_kwargs: dict[str, Any] = {}
    configure_quantization(types.SimpleNamespace(), None, model_args, True, init_kwargs)
    config = init_kwargs.get("quantization_config")
    if config is None:
        return None, []
    note = (
        f"configure_quantization: quantization_bit {model_args.quantization_bit} ({model_args.quantization_method}) -> "
        f"BitsAndBytesConfig load_in_4bit {config.load_in_4bit}, {config.bnb_4bit_quant_type}, double quant "
        f"{config.bnb_4bit_use_double_quant}, compute {config.bnb_4bit_compute_dtype}; device_map "
        f"{init_kwargs.get('device_map')}"
    )
    return common.bnb_quantize(config, job["expected"]["precision"]), [note]


ALPACA_FORMATS = {
    ("instruction", "input", "output"): "alpaca",
    ("prompt", None, "response"): "columns",
    ("prompt", None, "completion"): "prompt-completion",
    ("text", None, None): "text",
}
"""LoRA Advisor's format by the alpaca formatting's (prompt, query, response) columns."""
SHAREGPT_FORMATS = {("messages", "role"): "messages", ("conversations", "from"): "sharegpt"}
"""LoRA Advisor's format by the sharegpt formatting's (messages column, role tag)."""


def data_values(job: dict[str, Any], data_args: Any, stage: str) -> tuple[dict[str, Any], list[str]]:
    """The format LLaMA-Factory reads the dataset in and where it takes the loss, with the example converted."""
    if common.data_format(job) is None:
        return {}, []
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list

    (attr,) = get_dataset_list(data_args.dataset, data_args.dataset_dir)
    named: dict[str, Any] = {}  # the columns format's column names, as LLaMA-Factory's converter reads them
    if attr.formatting == "sharegpt":
        found = SHAREGPT_FORMATS.get((attr.messages, attr.role_tag), f"sharegpt {attr.messages}/{attr.role_tag}")
    else:
        columns = (attr.prompt, attr.query, attr.response)
        # Two columns, with no query, other than the formats' own are LoRA Advisor's columns format, named by a study.
        found = ALPACA_FORMATS.get(columns) or ("columns" if attr.prompt and attr.response and not attr.query else "")
        found = found or f"{attr.formatting} {columns}"
        named = {"columns": [attr.prompt, attr.response]} if found == "columns" else {}
    converted = get_dataset_converter(attr.formatting, attr, data_args)(job["example"])
    prompt, response = converted["_prompt"], converted["_response"]
    if not prompt or (stage == "sft" and not response):
        raise ValueError(f"the {attr.formatting} converter left the example empty: {converted}")
    loss = "all" if stage == "pt" or data_args.train_on_prompt else "responses"
    turns = [f"{turn['role']}: {turn['content']!r}" for turn in prompt + response]
    note = (
        f"dataset {attr.dataset_name!r} from {attr.load_from} via dataset_info.json ({attr.formatting}); stage "
        f"{stage}, train_on_prompt {data_args.train_on_prompt}; the example converts to {'; '.join(turns)}"
    )
    return {"data_format": found, "loss": loss, **named}, [note]


if __name__ == "__main__":
    common.run(check)
