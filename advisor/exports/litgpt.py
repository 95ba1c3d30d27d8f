"""LitGPT: litgpt-lora.yaml, run with `litgpt finetune_lora --config`.

Key names from LitGPT 0.5.13's `litgpt/args.py`, `litgpt/finetune/lora.py` and
`config_hub/finetune/llama-3.2-1B/lora.yaml`; QLoRA is setup's `quantize: bnb.nf4-dq` (`finetune/lora.py`: with
a '-true' precision, which becomes `BitsandbytesPrecision`'s dtype, and bitsandbytes' PagedAdamW). LitGPT's LoRA
(`litgpt/lora.py`) is plain LoRA, scaled by alpha / r, with none of rsLoRA, DoRA, PiSSA or LoRA+: a preset with a
variant exports as plain LoRA and the header says so.
finetune_lora's `validate_args` refuses train.max_norm and train.lr_warmup_fraction, and its `get_lr_scheduler`
divides by train.lr_warmup_steps (optimizer steps), so the warm-up is a step count; it has no setting for gradient
clipping, gradient checkpointing (only its multi-device sharding checkpoints activations) or attention (PyTorch's
SDPA, `litgpt/model.py`). Prompt styles by name from `litgpt/prompts.py` (`llama2`, `smollm2`). Data: finetune_lora
reads `litgpt.data.JSON` (`data/json_data.py`: instruction, optional input, output records; `mask_prompt` keeps the
prompt out of the loss) and has no loader for conversations; `litgpt.data.TextFiles` feeds `litgpt pretrain` only
(its batches are token tensors, not the input_ids / labels finetune_lora's loop reads), so plain text goes through
JSON with the `Default` prompt style, which adds nothing around an empty instruction.
scripts/export_checks/check_litgpt.py loads the file with LitGPT's own command line and finetune_lora's checks.
"""

from __future__ import annotations

from typing import Any

from advisor.exports import base, data
from advisor.presets import Preset
from tuner.models.load import hub_id

PRECISIONS = {"cpu": "32-true", "gpu": "bf16-true"}
"""The preset's hardware as LitGPT's precision (Lightning Fabric picks the device: CUDA where present)."""
QLORA_QUANTIZE = "bnb.nf4-dq"
"""QLoRA as finetune_lora's `quantize` choice: bitsandbytes NF4 with double quantisation (Lightning's
BitsandbytesPrecision), computing in the precision's dtype, which must then be a '-true' one, not mixed."""
PROMPT_STYLES = {"llama2": "llama2", "smollm2": "smollm2"}
"""Each model family's chat format as LitGPT's prompt style (litgpt/prompts.py's names)."""


def _note(*paragraphs: str) -> str:
    """A section comment, wrapped narrower than base.note's: LitGPT's files have always broken at 106."""
    return base.note(*paragraphs, width=106)


def _precision_note(preset: Preset) -> str:
    """The precision section's comment: where the preset trains, and what finetune_lora has no setting for."""
    where = (
        "32-true: float32 on a CPU (Lightning Fabric trains on CUDA instead where a GPU is present)."
        if preset.on_cpu
        else "bf16-true: the weights in bfloat16, on one CUDA GPU (Lightning Fabric picks it)."
    )
    sized = (
        "this preset was sized with gradient checkpointing, so it needs more memory here than its budget"
        if preset.gradient_checkpointing
        else "this preset trains without it, as it was sized"
    )
    qlora = (
        [
            f"quantize {QLORA_QUANTIZE}: QLoRA, the linear layers in 4-bit NF4 with double quantisation (bitsandbytes, "
            f"through Lightning's BitsandbytesPrecision), computing in {base.compute_dtype_text(preset)}: "
            "finetune_lora refuses quantisation with a mixed precision. It then trains with bitsandbytes' PagedAdamW "
            "(the optimizer's lr and weight_decay below)."
        ]
        if preset.recipe.quantize
        else []
    )
    return _note(
        where,
        *qlora,
        "LitGPT's finetune_lora has no setting for gradient checkpointing (only its multi-device sharding "
        f"checkpoints activations): {sized}. It has none for gradient clipping either (its validate_args refuses "
        "train.max_norm): it trains unclipped, not at the paper's 1.0. Nor for attention: it uses PyTorch's SDPA.",
    )


def _warmup_steps(preset: Preset) -> int:
    """The warm-up in optimizer steps, at least 1: finetune_lora's scheduler divides by it."""
    return max(1, base.warmup_steps(preset))


def _train_note(preset: Preset) -> str:
    """The training section's comment: how lr_warmup_steps was counted and how to recount it."""
    steps = base.warmup_steps(preset)
    floor = " (1, not 0: finetune_lora's scheduler divides by it)" if steps == 0 else ""
    return _note(
        f"Training: finetune_lora counts lr_warmup_steps in optimizer steps{floor}: {base.warmup_steps_note(preset)} "
        "(LitGPT trains on the 95% of your file that val_split_fraction leaves). The cosine then decays to 0.",
    )


def _data_section(preset: Preset) -> base.Section:
    """The data section: LitGPT's JSON loader (instruction / input / output records), with the prompt masked from
    the loss for instruction tuning and a prompt style for the model."""
    style = PROMPT_STYLES.get(base.model_family(preset) or "")
    styled = (
        f"prompt_style is LitGPT's {style!r}, the model's chat format."
        if style
        else "prompt_style is left to LitGPT's default ('alpaca'): set your model's chat format."
    )
    fmt = preset.data_format
    args: dict[str, Any] = {"json_path": base.DATA_PLACEHOLDER, "val_split_fraction": 0.05}
    if fmt is None:
        text = "Data: fill in your JSON file (instruction / input / output records); " + styled
        return _note(text), {"data": {"class_path": "litgpt.data.JSON", "init_args": {**args, **_style(style)}}}
    if fmt == "text":
        styled = "prompt_style litgpt.prompts.Default adds nothing around the empty instruction."
        loss = "mask_prompt false: the loss on every token (continued pretraining)."
        prompt: dict[str, Any] = {"prompt_style": {"class_path": "litgpt.prompts.Default"}}
    else:
        every = data.every_token(preset)
        what = "every token, prompts too (continued pretraining)" if every else f"{data.answer(preset)} only"
        loss = f"mask_prompt {str(not every).lower()}: the loss on {what}."
        prompt = _style(style)
    text = f"Data: fill in your JSON file: {data.format_note(FORMAT_NOTES, preset)} {loss} {styled}"
    init = {**args, "mask_prompt": not data.every_token(preset), **prompt}
    return _note(text), {"data": {"class_path": "litgpt.data.JSON", "init_args": init}}


def _style(style: str | None) -> dict[str, Any]:
    return {"prompt_style": style} if style else {}


FORMAT_NOTES = {
    "messages": "LitGPT has no loader for conversations: finetune_lora reads one instruction and one output per "
    "record (litgpt.data.JSON), so write each conversation as its last assistant turn (output) and the turns "
    "before it (instruction), or train it with another tool.",
    "sharegpt": "LitGPT has no loader for conversations: finetune_lora reads one instruction and one output per "
    "record (litgpt.data.JSON), so write each conversation as its last gpt turn (output) and the turns before it "
    "(instruction), or train it with another tool.",
    "alpaca": "Alpaca records (instruction, input, output), which litgpt.data.JSON reads as they are. Only LitGPT's "
    "'alpaca' prompt style writes the input: with a chat style (below), join each input to its instruction "
    "(instruction, a blank line, input), as LoRA Advisor renders it.",
    "columns": "litgpt.data.JSON reads instruction / output records: write {prompt} as instruction and {response} "
    "as output.",
    "prompt-completion": "litgpt.data.JSON reads instruction / output records: write prompt as instruction and "
    "completion as output (plain strings; the prompt style formats the instruction as a chat turn, where LoRA "
    "Advisor trains plain strings as raw text).",
    "text": "finetune_lora reads instruction / output records (litgpt.data.TextFiles feeds litgpt pretrain, which "
    "trains every weight, not LoRA): write each document as {'instruction': '', 'output': TEXT}.",
}
"""What each data format is to LitGPT's finetune_lora."""


def litgpt_sections(preset: Preset) -> list[base.Section]:
    """litgpt-lora.yaml's sections: checkpoint, precision, LoRA, data, training, optimizer."""
    lora = preset.recipe.lora
    attention = lora.targets in ("attention", "all")
    model = hub_id(preset.model)
    return [
        (
            "The model as `litgpt download HUB_ID` stores it.",
            {
                "checkpoint_dir": f"checkpoints/{model or base.MODEL_PLACEHOLDER}",
                "out_dir": f"out/finetune/{preset.name}",
            },
        ),
        (
            _precision_note(preset),
            {
                "precision": PRECISIONS[preset.hardware],
                "devices": 1,
                **({"quantize": QLORA_QUANTIZE} if preset.recipe.quantize else {}),
            },
        ),
        (
            "LoRA: query, key, value and projection are attention's q/k/v/o_proj; lora_mlp the MLP.",
            {
                "lora_r": lora.rank,
                "lora_alpha": base.whole(lora.alpha),
                "lora_dropout": lora.dropout,
                "lora_query": attention,
                "lora_key": attention,
                "lora_value": attention,
                "lora_projection": attention,
                "lora_mlp": lora.targets in ("mlp", "all"),
                "lora_head": False,
            },
        ),
        _data_section(preset),
        (
            _train_note(preset),
            {
                "train": {
                    "global_batch_size": preset.recipe.batch_size,
                    "micro_batch_size": preset.recipe.batch_size,
                    "epochs": preset.recipe.epochs,
                    "max_seq_length": preset.recipe.seq_len,
                    "lr_warmup_steps": _warmup_steps(preset),
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


def read_litgpt(fields: dict[str, Any]) -> dict[str, Any]:
    """The carried values from litgpt-lora.yaml's fields (its warm-up is a step count: not carried)."""
    flags = {name: bool(fields.get(f"lora_{name}")) for name in ("query", "key", "value", "projection", "mlp")}
    attention = [flags[name] for name in ("query", "key", "value", "projection")]
    if all(attention):
        targets = "all" if flags["mlp"] else "attention"
    elif not any(attention) and flags["mlp"]:
        targets = "mlp"
    else:
        raise TypeError(f"LoRA flags {flags}: LoRA Advisor's presets adapt all attention projections or none")
    train = fields["train"]
    epochs = base.as_int(train["epochs"])
    optimizer = fields.get("optimizer")
    # Recent LitGPT keeps the learning rate with the optimizer; older versions in train.learning_rate.
    rate = optimizer["init_args"]["lr"] if isinstance(optimizer, dict) else train["learning_rate"]
    precision = fields["precision"]
    hardware = next((name for name, value in PRECISIONS.items() if value == precision), None)
    if hardware is None:
        raise TypeError(f"precision {precision}: LoRA Advisor's presets train in 32-true on a CPU or bf16-true")
    return {
        **base.adapter_values(fields["lora_r"], fields["lora_alpha"], targets, fields.get("lora_dropout")),
        "learning_rate": base.as_float(rate),
        "epochs": epochs,
        "batch_size": base.as_int(train["global_batch_size"]),
        "seq_len": base.as_int(train["max_seq_length"]),
        "hardware": hardware,
        "quantize": _quantize_of(fields.get("quantize")),
    }


def _quantize_of(quantize: Any) -> str | None:
    """'nf4' for finetune_lora's bnb.nf4-dq, None for none; TypeError for another quantisation."""
    if quantize is None:
        return None
    if quantize != QLORA_QUANTIZE:
        raise TypeError(f"quantize {quantize}: LoRA Advisor's QLoRA is {QLORA_QUANTIZE} (NF4, double quantised)")
    return "nf4"


def litgpt_refusal(preset: Preset) -> str | None:
    """Lightning Fabric refuses LitGPT's bitsandbytes quantisation off CUDA, so a CPU QLoRA preset cannot go there."""
    if preset.recipe.quantize is not None and preset.on_cpu:
        return (
            "LitGPT quantises through Lightning's bitsandbytes plugin, which Fabric refuses without a CUDA GPU "
            "('Bitsandbytes is only supported on CUDA GPUs'), so a CPU QLoRA preset cannot be exported to LitGPT: "
            "export it with --hardware gpu"
        )
    return None


def is_litgpt(fields: dict[str, Any]) -> bool:
    """Whether the fields are a LitGPT config (lora_query, or a top-level checkpoint_dir)."""
    return "lora_query" in fields or "checkpoint_dir" in fields


LITGPT = base.ExportFormat(
    name="litgpt",
    tool="LitGPT",
    file_name="litgpt-lora.yaml",
    usage="litgpt finetune_lora --config {file}",
    fill_in="data.init_args.json_path (your data); run `litgpt download MODEL` for checkpoint_dir; recount "
    "train.lr_warmup_steps for your data (its comment says how)",
    fill_in_data="data.init_args.json_path, your data written as instruction / output records (LitGPT has no LoRA "
    "loader for conversations or plain text: the data section says how to write them); run `litgpt download "
    "MODEL` for checkpoint_dir; recount train.lr_warmup_steps for your data (its comment says how)",
    # no variant (LitGPT has plain LoRA only), no warm-up share (a step count, which needs the data's size), no
    # gradient checkpointing (finetune_lora has no setting for it)
    carried=(*base.ADAPTER, *base.TRAINING, "hardware", "quantize"),
    write=base.yaml_writer(litgpt_sections),
    read=read_litgpt,
    detect=is_litgpt,
    detect_order=90,  # checkpoint_dir is a common name: tried after every other tool's keys
    refusal=litgpt_refusal,
)
