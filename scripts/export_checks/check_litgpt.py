"""LitGPT's check: litgpt-lora.yaml parsed by `litgpt finetune_lora --config`'s own command line (litgpt.__main__'s
jsonargparse CLI), with finetune_lora's setup swapped for a stand-in that keeps the parsed arguments instead of
training; then what finetune_lora does with them before training: its validate_args, Lightning Fabric at the parsed
precision (with `quantize: bnb.*`, Lightning's BitsandbytesPrecision in that precision's dtype, as setup builds it:
QLoRA), the LoRA model (litgpt.lora.GPT, on the meta device, from LitGPT's own config for the checkpoint's name), the
optimizer and get_lr_scheduler. The values are read back from those objects. See common.py for the protocol.

The data file is the one thing filled in, as the export's header asks: a two-record JSON file in a temporary folder
(`--data.init_args.json_path`), since litgpt.data.JSON refuses a path that does not exist.

For a preset that knows its data format, the data file holds the job's example record written as the export's data
comment says (instruction / output), and LitGPT's own SFTDataset, with the data module's prompt style and
mask_prompt, builds its labels (on a character tokenizer): where the loss is taken is read from which of them are
kept from it. LitGPT's JSON loader reads one record shape whatever the format, so no format is read back.

Named check_litgpt.py, not litgpt.py: a script's folder comes first on sys.path, so a litgpt.py here would shadow
the litgpt package it imports."""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import common
import lightning as L
import torch
from lightning.fabric.connector import _Connector
from lightning.fabric.plugins import BitsandbytesPrecision
from litgpt import __main__ as litgpt_cli
from litgpt.finetune import lora as finetune_lora
from litgpt.lora import GPT, Config, LoRALinear, LoRAQKVLinear
from litgpt.prompts import prompt_styles
from litgpt.utils import instantiate_bnb_optimizer, instantiate_torch_optimizer

PRECISIONS = {"bf16-true": "bf16", "32-true": "fp32"}
HARDWARE = {"bf16-true": "gpu", "32-true": "cpu"}
DTYPES = {torch.bfloat16: "bf16", torch.float32: "fp32"}
ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}
DATA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Add 4 and 5.", "input": "", "output": "9"},
]


def parsed_arguments(path: str, data_file: Path) -> dict[str, Any]:
    """finetune_lora's arguments as `litgpt finetune_lora --config PATH` parses them; SystemExit's message as a
    RuntimeError where the parser refuses the file."""
    captured: dict[str, Any] = {}

    @functools.wraps(finetune_lora.setup)
    def keep(*args: Any, **kwargs: Any) -> None:
        captured.update(inspect.signature(finetune_lora.setup).bind(*args, **kwargs).arguments)

    argv = ["litgpt", "finetune_lora", "--config", path, "--data.init_args.json_path", str(data_file)]
    said = io.StringIO()
    with mock.patch.dict(litgpt_cli.PARSER_DATA, {"finetune_lora": keep}), mock.patch.object(sys, "argv", argv):
        try:
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                litgpt_cli.main()
        except SystemExit as refused:
            lines = [line for line in said.getvalue().splitlines() if line.strip()]
            raise RuntimeError(f"litgpt finetune_lora: {' '.join(lines[-3:]) if lines else refused}") from None
    if not captured:
        raise RuntimeError(f"finetune_lora's setup was not reached: {said.getvalue().strip()[:200]}")
    return captured


def targets(names: set[str]) -> str:
    """'all', 'attention' or 'mlp' from Hugging Face layer names."""
    return {frozenset(ATTENTION | MLP): "all", frozenset(ATTENTION): "attention", frozenset(MLP): "mlp"}.get(
        frozenset(names), f"other: {sorted(names)}"
    )


def record_of(example: dict[str, Any], columns: list[str] | None = None) -> dict[str, str]:
    """An example record of any format as the instruction / output record the export's data comment asks for (the
    columns format's from its prompt and response columns, `columns`)."""
    if "conversations" in example or "messages" in example:
        turns = example.get("messages") or [
            {"role": "assistant" if t["from"] == "gpt" else t["from"], "content": t["value"]}
            for t in example["conversations"]
        ]
        last = max(i for i, turn in enumerate(turns) if turn["role"] == "assistant")
        return {"instruction": "\n".join(t["content"] for t in turns[:last]), "output": turns[last]["content"]}
    if "instruction" in example:
        return example
    if "text" in example:
        return {"instruction": "", "output": example["text"]}
    if columns is not None:
        return {"instruction": example[columns[0]], "output": example[columns[1]]}
    return {"instruction": example["prompt"], "output": example.get("completion", example.get("response"))}


class CharTokenizer:
    """Stands in for LitGPT's Tokenizer in SFTDataset: one id per character, BOS 1 and EOS 2 as asked."""

    def encode(self, text: str, bos: bool | None = None, eos: bool = False, max_length: int = -1) -> torch.Tensor:
        ids = ([1] if bos is not False else []) + [ord(c) for c in text] + ([2] if eos else [])
        return torch.tensor(ids[:max_length] if max_length > 0 else ids, dtype=torch.int)


def data_values(job: dict[str, Any], data: Any, record: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Where the loss falls on the example record, by LitGPT's SFTDataset with the parsed data module's settings."""
    from litgpt.data import SFTDataset

    item = SFTDataset([record], CharTokenizer(), data.prompt_style, mask_prompt=data.mask_prompt)[0]
    masked = (item["labels"] == -100).tolist()
    prompt = data.prompt_style.apply(prompt=record["instruction"], **record)
    note = (
        f"data: {type(data).__name__}, mask_prompt {data.mask_prompt}, prompt style "
        f"{type(data.prompt_style).__name__}: the example's prompt renders as {prompt!r}, {sum(masked)} of "
        f"{len(masked)} tokens kept from the loss"
    )
    return {"loss": common.loss_of(masked)}, [note]


def make_fabric(args: dict[str, Any], hardware: str) -> tuple[L.Fabric, list[str]]:
    """Lightning Fabric as finetune_lora's setup builds it on one device (strategy "auto": CUDA where present, else
    the CPU): at the parsed precision, or under bitsandbytes quantisation with BitsandbytesPrecision in that
    precision's dtype (setup's refusal of a mixed one kept). The notes say what was quantised or patched (none: no
    quantisation)."""
    quantize, precision = args.get("quantize"), args["precision"]
    one_device = {"devices": args["devices"], "num_nodes": args["num_nodes"], "strategy": "auto"}
    if quantize is None or not quantize.startswith("bnb."):
        return L.Fabric(**one_device, precision=precision), []
    if "mixed" in precision:
        raise ValueError("Quantization and mixed precision is not supported.")  # setup's own refusal
    dtype = {"16-true": torch.float16, "bf16-true": torch.bfloat16, "32-true": torch.float32}[precision]
    plugin = BitsandbytesPrecision(quantize[4:], dtype)
    notes = [f"BitsandbytesPrecision({quantize[4:]!r}, {dtype}): linear layers {plugin._linear_cls.__name__}"]
    with contextlib.ExitStack() as stack:
        if hardware == "gpu" and not torch.cuda.is_available():
            # Fabric's one CUDA check for the plugin; a CPU preset keeps it (and is refused, as LitGPT would)
            stack.enter_context(
                mock.patch.object(_Connector, "_check_and_init_precision", lambda self: self._precision_instance)
            )
            notes.append("no CUDA here: Fabric's 'Bitsandbytes is only supported on CUDA GPUs' check patched to pass")
        fabric = L.Fabric(**one_device, precision=None, plugins=plugin)
    return fabric, notes


def quantization(layers: list[Any], precision: str) -> str | None:
    """'nf4' where every LoRA layer's base linear is bitsandbytes' 4-bit NF4 with double quantisation
    (compress_statistics) computing in the precision's dtype; None where none is 4-bit (16 bits)."""
    import bitsandbytes as bnb

    bases = [module.linear for module in layers]
    four = [base for base in bases if isinstance(base, bnb.nn.Linear4bit)]
    if not four:
        return None
    if len(four) < len(bases):
        return f"4-bit on {len(four)} of {len(bases)} LoRA layers"
    weight = four[0].weight
    return common.four_bit(weight.quant_type, weight.compress_statistics, four[0].compute_dtype, precision)


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    records = [record_of(job["example"], job["expected"].get("columns"))] * 2 if "example" in job else DATA
    with tempfile.TemporaryDirectory() as folder:
        data_file = Path(folder) / "data.json"
        data_file.write_text(json.dumps(records), encoding="utf-8")
        args = parsed_arguments(job["file"], data_file)
    train, evaluation = args["train"], args["eval"]
    finetune_lora.validate_args(train, evaluation)
    fabric, quantisation_notes = make_fabric(args, job["expected"]["hardware"])
    quantised = isinstance(fabric.strategy.precision, BitsandbytesPrecision)
    # with bitsandbytes, setup hands Fabric the plugin and no precision: the parsed one names the plugin's dtype
    precision = args["precision"] if quantised else fabric.strategy.precision.precision
    name = Path(args["checkpoint_dir"]).name
    config = Config.from_name(
        name, **{key: args[key] for key in inspect.signature(finetune_lora.setup).parameters if key.startswith("lora_")}
    )
    with fabric.strategy.precision.module_init_context(), torch.device("meta"):
        model = GPT(config)
    if quantised:
        model = fabric.strategy.precision.convert_module(model)  # as fabric.setup_module: the 4-bit compute dtype
    block = model.transformer.h[0]
    qkv, out = block.attn.qkv, block.attn.proj
    layers: dict[str, LoRALinear | LoRAQKVLinear] = {}
    for enabled, hf_name in zip(qkv.enable_lora, ("q_proj", "k_proj", "v_proj"), strict=True):
        if enabled and qkv.r > 0:
            layers[hf_name] = qkv
    mlp = {"gate_proj": block.mlp.fc_1, "up_proj": block.mlp.fc_2, "down_proj": block.mlp.proj}
    layers.update({hf: module for hf, module in [("o_proj", out), *mlp.items()] if module.r > 0})
    if not layers:
        raise RuntimeError("the LoRA model has no LoRA layer in its first block")
    adapter = common.one_value(
        rank={module.r for module in layers.values()},
        alpha={module.lora_alpha for module in layers.values()},
        dropout={getattr(module.lora_dropout, "p", 0.0) for module in layers.values()},
    )
    # as finetune_lora's main: bitsandbytes' PagedAdamW with the optimizer's arguments under quantisation
    instantiate = instantiate_bnb_optimizer if quantised else instantiate_torch_optimizer
    optimizer = instantiate(args["optimizer"], [torch.nn.Parameter(torch.zeros(1))])
    rate = optimizer.param_groups[0]["lr"]  # before the scheduler, which scales it by the warm-up's first step
    max_steps = 10 * max(1, train.lr_warmup_steps or 0)  # the schedule's length does not move the warm-up
    scheduler = finetune_lora.get_lr_scheduler(optimizer, warmup_steps=train.lr_warmup_steps, max_steps=max_steps)
    data = args["data"]
    style = next((key for key, kind in prompt_styles.items() if type(data.prompt_style) is kind), None)
    base_dtype = block.attn.qkv.linear.weight.dtype
    notes = [
        f"model {name} from LitGPT's own config (Config.from_name; setup reads the same from the checkpoint's "
        f"model_config.yaml), on the meta device: base weights {base_dtype}",
        f"precision {precision} (Fabric's plugin {type(fabric.strategy.precision).__name__}); hardware read from it: "
        "LitGPT has no device key (Fabric picks CUDA where present)",
        f"warm-up from get_lr_scheduler's milestone: {scheduler._milestones[0]} optimizer steps",
        f"data {type(data).__name__} with prompt style {style or type(data.prompt_style).__name__}; max_norm "
        f"{train.max_norm}, lr_warmup_fraction {train.lr_warmup_fraction}; eval.max_new_tokens "
        f"{evaluation.max_new_tokens}",
        "LitGPT has no attention key (PyTorch SDPA) and no gradient checkpointing key in finetune_lora",
        *quantisation_notes,
    ]
    got = {
        "learning_rate": rate,
        "rank": adapter["rank"],
        "alpha": float(adapter["alpha"]),
        "dropout": float(adapter["dropout"]),
        "targets": targets(set(layers)),
        "target_modules": sorted(layers),
        "epochs": train.epochs,
        "batch_size": train.batch_size(args["devices"], args["num_nodes"]),
        "seq_len": train.max_seq_length,
        "warmup_steps": scheduler._milestones[0],
        "precision": PRECISIONS.get(precision, precision),
        "hardware": HARDWARE.get(precision, precision),
        "quantize": quantization(list(layers.values()), PRECISIONS.get(precision, precision)),
    }
    if quantised:
        notes.append(f"quantize {args['quantize']}; optimizer {type(optimizer).__name__}")
    if style is not None:
        got["family"] = style
    if DTYPES.get(base_dtype) != got["precision"]:
        notes.append(f"the model's base weights are {base_dtype}, not {precision}")
    if common.data_format(job) is not None:
        values, said = data_values(job, data, records[0])
        got |= values
        notes += said
    return got, notes


if __name__ == "__main__":
    common.run(check)
