"""TRL's check: trl-sft.yaml parsed by `trl sft`'s own parser (TrlParser over ScriptArguments, SFTConfig, ModelConfig
and DatasetMixtureConfig, unknown keys refused), the LoRA config built by TRL's get_peft_config and the
BitsAndBytesConfig built by its get_quantization_config (QLoRA), and the values read back from those objects. See
common.py for the protocol.

For a preset that knows its data format, where the loss is taken is read from SFTConfig (TRL finds the format from
the data's columns: conversations, prompt/completion or text), and a .jinja chat_template_path is checked as
SFTTrainer would use it with assistant_only_loss: TRL's has_generation_markers must find the markers, and the
example conversation rendered through transformers' render_jinja_template must mark its assistant turns."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import common
import torch
from trl import get_peft_config, get_quantization_config
from trl.scripts.sft import make_parser

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}


def targets(modules: Any) -> str:
    """'all', 'attention' or 'mlp' from PEFT's target_modules ('all-linear' or a set of names)."""
    if modules == "all-linear":
        return "all"
    names = set(modules)
    return {frozenset(ATTENTION | MLP): "all", frozenset(ATTENTION): "attention", frozenset(MLP): "mlp"}.get(
        frozenset(names), f"other: {sorted(names)}"
    )


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    with ExitStack() as stack:
        if job["expected"]["hardware"] == "gpu" and not torch.cuda.is_available():
            stack.enter_context(mock.patch("transformers.training_args.is_torch_bf16_gpu_available", lambda: True))
            notes.append("no GPU here: transformers' bf16-GPU check patched to pass")
        parser = make_parser()
        _, training, model, _ = parser.parse_args_and_config(["--config", job["file"]], fail_with_unknown_args=True)
    lora = get_peft_config(model)
    quantization = get_quantization_config(model)  # what `trl sft` passes to SFTTrainer (None: 16 bits)
    steps = 1_000_000
    if training.bf16 and model.dtype == "bfloat16":
        precision = "bf16"
    elif not training.bf16 and not training.fp16 and model.dtype in (None, "float32"):
        precision = "fp32"
    else:
        precision = f"mixed (bf16 {training.bf16}, fp16 {training.fp16}, dtype {model.dtype})"
    if training.use_cpu and training.device.type != "cpu":
        notes.append(f"use_cpu set but the device is {training.device}")
    got = {
        "learning_rate": training.learning_rate,
        "epochs": training.num_train_epochs,
        "batch_size": training.per_device_train_batch_size * training.gradient_accumulation_steps,
        "seq_len": training.max_length,
        "warmup_ratio": training.get_warmup_steps(steps) / steps,
        "rank": lora.r,
        "alpha": float(lora.lora_alpha),
        "dropout": lora.lora_dropout,
        "targets": targets(lora.target_modules),
        "precision": precision,
        "hardware": "cpu" if training.use_cpu else "gpu",
        "gradient_checkpointing": training.gradient_checkpointing,
        "quantize": common.bnb_quantize(quantization, job["expected"]["precision"]),
    }
    if quantization is not None:
        notes.append(
            f"get_quantization_config: load_in_4bit {quantization.load_in_4bit}, {quantization.bnb_4bit_quant_type}, "
            f"double quant {quantization.bnb_4bit_use_double_quant}, compute {quantization.bnb_4bit_compute_dtype}"
        )
    if model.attn_implementation != "sdpa":
        notes.append(f"attention: {model.attn_implementation}")
    data, said = data_values(job, training)
    return got | data, notes + said


SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
"""The role mapping the export's comment asks for before TRL reads ShareGPT data (for the example's turns)."""


def data_values(job: dict[str, Any], training: Any) -> tuple[dict[str, Any], list[str]]:
    """Where SFTConfig takes the loss for the job's data format, and a note on the data keys it holds."""
    fmt = common.data_format(job)
    if fmt is None:
        return {}, []
    if fmt in ("messages", "sharegpt"):
        loss = "responses" if training.assistant_only_loss else "all"
    elif fmt == "text":
        loss = "all" if not training.completion_only_loss else "responses"
    else:  # prompt/completion: None is TRL's default, the completion only
        loss = "all" if training.completion_only_loss is False else "responses"
    notes = [
        f"data: assistant_only_loss {training.assistant_only_loss}, completion_only_loss "
        f"{training.completion_only_loss}, dataset_text_field {training.dataset_text_field!r}, packing "
        f"{training.packing} ({training.packing_strategy}), chat_template_path {training.chat_template_path}"
    ]
    if fmt == "text" and training.dataset_text_field != "text":
        raise ValueError(f"dataset_text_field is {training.dataset_text_field!r}, not the text column")
    template = training.chat_template_path
    if template and template.endswith((".jinja", ".j2")):
        notes.append(marked_template(Path(job["dir"]) / template, job))
    return {"loss": loss}, notes


def marked_template(path: Path, job: dict[str, Any]) -> str:
    """Check a chat template file as assistant_only_loss uses it; RuntimeError where it would not mark the turns."""
    from transformers.utils.chat_template_utils import render_jinja_template
    from trl.chat_template_utils import has_generation_markers

    template = path.read_text(encoding="utf-8")
    if not has_generation_markers(template):
        raise RuntimeError(f"{path.name}: TRL finds no {{% generation %}} markers in it")
    example = job["example"]
    if "messages" in example:
        turns = example["messages"]
    else:
        turns = [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in example["conversations"]]
    rendered, spans = render_jinja_template(
        [turns], chat_template=template, return_assistant_tokens_mask=True, bos_token="<s>", eos_token="</s>"
    )
    marked = [rendered[0][start:end] for start, end in spans[0]]
    answers = [turn["content"] for turn in turns if turn["role"] == "assistant"]
    if len(marked) != len(answers) or not all(
        answer.strip() in span for answer, span in zip(answers, marked, strict=True)
    ):
        raise RuntimeError(f"{path.name} marks {marked!r}, not the assistant turns {answers!r}")
    return f"{path.name}: TRL's has_generation_markers finds the markers; the example's assistant turns: {marked!r}"


if __name__ == "__main__":
    common.run(check)
