"""torchtune's check: torchtune.yaml through `tune validate` (its CLI: every component's arguments bound to its
signature), then through lora_finetune_single_device's own code: the recipe's __init__ (device, dtype, activation
checkpointing and offloading, epochs), the model builder on the meta device under the recipe's dtype (a qlora_
builder's base weights come out as torchao NF4 tensors: QLoRA), the optimizer and the learning-rate scheduler; the
values are read back from those objects. See common.py for the protocol.

For a preset that knows its data format, the dataset builder is instantiated by name from the config (with
torchtune's dataset classes, which would load the data file, swapped for a stand-in that keeps their arguments), and
the message transform it built is applied to the job's example record: the format is read from the builder and its
arguments, where the loss is taken from which messages the transform masks.

Named check_torchtune.py, not torchtune.py: a script's folder comes first on sys.path, so a torchtune.py here
would shadow the torchtune package it imports."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import runpy
from contextlib import ExitStack
from typing import Any
from unittest import mock

import common
import torch
from omegaconf import OmegaConf
from torchtune import config, training
from torchtune._cli.run import ROOT
from torchtune._cli.tune import TuneCLIParser
from torchtune.data._prompt_templates import _get_prompt_template
from torchtune.modules.peft import DoRALinear, LoRALinear

# torchtune's layer names -> the Hugging Face (Llama) names the presets use.
HF_NAMES = {
    "q_proj": "q_proj",
    "k_proj": "k_proj",
    "v_proj": "v_proj",
    "output_proj": "o_proj",
    "w1": "gate_proj",
    "w3": "up_proj",
    "w2": "down_proj",
}
ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}
PRECISIONS = {torch.bfloat16: "bf16", torch.float32: "fp32"}
# The recipe as `tune run lora_finetune_single_device` finds it (its recipes folder is no package to import).
RECIPE = runpy.run_path(str(ROOT / "recipes" / "lora_finetune_single_device.py"))["LoRAFinetuneRecipeSingleDevice"]


def tune_validate(path: str) -> None:
    """`tune validate PATH` as its CLI runs it; RuntimeError with its message where it refuses the file."""
    parser = TuneCLIParser()
    args = parser._parser.parse_args(["validate", path])
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            parser.run(args)
    except SystemExit as refused:
        lines = [line for line in said.getvalue().splitlines() if line.strip()]
        raise RuntimeError(f"tune validate: {lines[-1] if lines else refused}") from None
    if "Config is well-formed!" not in said.getvalue():
        raise RuntimeError(f"tune validate said: {said.getvalue().strip()[:200]}")


def targets(names: set[str]) -> str:
    """'all', 'attention' or 'mlp' from Hugging Face layer names."""
    return {frozenset(ATTENTION | MLP): "all", frozenset(ATTENTION): "attention", frozenset(MLP): "mlp"}.get(
        frozenset(names), f"other: {sorted(names)}"
    )


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    tune_validate(job["file"])
    cfg = OmegaConf.load(job["file"])
    with ExitStack() as stack:
        if job["expected"]["hardware"] == "gpu" and not torch.cuda.is_available():
            # torchtune's availability checks only: setting the CUDA device, probing it, bf16 support on it.
            stack.enter_context(
                mock.patch("torchtune.utils._device._setup_device", lambda device: torch.device(device.type, 0))
            )
            stack.enter_context(mock.patch("torchtune.utils._device._validate_device_from_env", lambda device: None))
            stack.enter_context(mock.patch("torchtune.training.precision.verify_bf16_support", lambda: True))
            notes.append("no GPU here: torchtune's CUDA device set-up/probe and bf16 support check patched to pass")
        recipe = RECIPE(cfg)
    with training.set_default_dtype(recipe._dtype), torch.device("meta"):
        model = config.instantiate(cfg.model)
    adapters = {
        name.rsplit(".", 1)[-1]: module
        for name, module in model.named_modules()
        if name.startswith("layers.0.") and isinstance(module, LoRALinear | DoRALinear)
    }
    if not adapters:
        raise RuntimeError("the model builder put no LoRA layer in layers.0")
    adapter = common.one_value(
        rank={module.rank for module in adapters.values()},
        alpha={module.alpha for module in adapters.values()},
        dropout={getattr(module.dropout, "p", 0.0) for module in adapters.values()},
    )
    names = {HF_NAMES.get(name, name) for name in adapters}
    base_dtype = model.layers[0].attn.q_proj.weight.dtype
    optimizer = config.instantiate(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    rate = optimizer.param_groups[0]["lr"]  # before the scheduler, which scales it by the warm-up's first step
    scheduler = config.instantiate(cfg.lr_scheduler, optimizer, num_training_steps=1_000_000)
    schedule = inspect.getclosurevars(scheduler.lr_lambdas[0]).nonlocals
    prompt_template = cfg.tokenizer.get("prompt_template")
    template = type(_get_prompt_template(prompt_template)).__name__ if prompt_template else "none"
    notes += [
        f"model {cfg.model._component_.rsplit('.', 1)[-1]} on the meta device: base weights {base_dtype}; "
        f"LoRA on {sorted(adapters)} (torchtune's names, read as {sorted(names)})",
        f"device {recipe._device}; dtype {recipe._dtype}; activation offloading {recipe._enable_activation_offloading}",
        f"prompt_template {template}; seq_len is tokenizer.max_seq_len from the DictConfig (the tokenizer needs "
        "its file); torchtune has no attention key (PyTorch SDPA, flex attention for packed rows on CUDA)",
        f"warm-up from the scheduler's lr_lambda: num_warmup_steps {schedule['num_warmup_steps']}",
    ]
    got = {
        "learning_rate": rate,
        "rank": adapter["rank"],
        "alpha": float(adapter["alpha"]),
        "dropout": float(adapter["dropout"]),
        "targets": targets(names),
        "target_modules": sorted(names),
        "epochs": recipe.total_epochs,
        "batch_size": cfg.batch_size * recipe._gradient_accumulation_steps,
        "seq_len": cfg.tokenizer.max_seq_len,
        "warmup_steps": schedule["num_warmup_steps"],
        "hardware": {"cuda": "gpu", "cpu": "cpu"}.get(recipe._device.type, recipe._device.type),
        "precision": PRECISIONS.get(recipe._dtype, str(recipe._dtype)),
        "gradient_checkpointing": recipe._enable_activation_checkpointing,
        "quantize": quantization(list(adapters.values()), job["expected"]["precision"]),
    }
    if got["quantize"] is not None:
        weight = model.layers[0].attn.q_proj.weight
        notes.append(
            f"base weights NF4Tensor (block {weight.block_size}, scales quantised to {weight.quantized_scalers.dtype} "
            f"in blocks of {weight.scaler_block_size}): {cfg.model._component_} quantises them with torchao"
        )
    if PRECISIONS.get(base_dtype) != got["precision"]:
        notes.append(f"the model's base weights are {base_dtype}, not the recipe's dtype {recipe._dtype}")
    data, said = data_values(job, cfg)
    return got | data, notes + said


def quantization(adapters: list[Any], precision: str) -> str | None:
    """'nf4' where every LoRA layer's base weight is torchao's NF4Tensor (its scales quantised again: double
    quantisation) in the recipe's dtype, None where none is (16 bits); else what was found."""
    from torchao.dtypes.nf4tensor import NF4Tensor

    quantised = [module.weight for module in adapters if isinstance(module.weight, NF4Tensor)]
    if not quantised:
        return None
    if len(quantised) < len(adapters):
        return f"NF4 on {len(quantised)} of {len(adapters)} LoRA layers"
    double = all(str(weight.quantized_scalers.dtype) == "torch.int8" for weight in quantised)
    return common.four_bit("nf4", double, quantised[0].dtype, precision)


class Kept:
    """Stands in for a torchtune dataset class: keeps the arguments it was built with, loads nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class StubTokenizer:
    """What a dataset builder asks of the tokenizer before loading data: the packed row length."""

    max_seq_len = 512


BUILDERS = ("_chat", "_instruct", "_alpaca", "_text_completion")
"""torchtune.datasets' builder modules, whose dataset classes are swapped for Kept."""


def data_values(job: dict[str, Any], cfg: Any) -> tuple[dict[str, Any], list[str]]:
    """The format torchtune's dataset builder reads and where its message transform takes the loss."""
    if common.data_format(job) is None:
        return {}, []
    with ExitStack() as stack:
        for module in BUILDERS:
            for name in ("SFTDataset", "PackedDataset", "TextCompletionDataset"):
                target = f"torchtune.datasets.{module}.{name}"
                if hasattr(importlib.import_module(target.rsplit(".", 1)[0]), name):
                    stack.enter_context(mock.patch(target, Kept))
        built = config.instantiate(cfg.dataset, StubTokenizer())
    kept = built.args[0] if built.args and isinstance(built.args[0], Kept) else built  # PackedDataset(dataset, ...)
    builder = cfg.dataset._component_.rsplit(".", 1)[-1]
    if builder == "text_completion_dataset":
        column = kept.kwargs["column"]
        return {"data_format": "text" if column == "text" else f"text column {column}", "loss": "all"}, [
            f"data: {builder} on column {column!r}, add_eos {kept.kwargs.get('add_eos')}, packed {cfg.dataset.packed}"
        ]
    transform = kept.kwargs["message_transform"]
    messages = transform(job["example"])["messages"]
    styles = {"OpenAIToMessages": "messages", "ShareGPTToMessages": "sharegpt", "AlpacaToMessages": "alpaca"}
    found = styles.get(type(transform).__name__)
    named: dict[str, Any] = {}  # the columns format's column names, as the transform read the example by them
    if found is None:
        column_map = cfg.dataset.get("column_map") or {}
        columns = [column_map.get("input", "input"), column_map.get("output", "output")]
        # Two columns other than prompt/completion are LoRA Advisor's columns format, under the study's names.
        found = "prompt-completion" if columns == ["prompt", "completion"] else "columns"
        named = {"columns": columns} if found == "columns" else {}
    turns = [f"{m.role}{' (masked)' if m.masked else ''}: {m.text_content!r}" for m in messages]
    return {"data_format": found, "loss": common.loss_of([m.masked for m in messages]), **named}, [
        f"data: {builder} with {type(transform).__name__}; the example becomes {'; '.join(turns)}"
    ]


if __name__ == "__main__":
    common.run(check)
