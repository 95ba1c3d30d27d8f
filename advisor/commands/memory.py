"""`advisor memory`: what a training setup needs, part by part, and what fits a budget."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from advisor.arguments import ModelArgs, positive, size
from advisor.flags import option
from tuner.defaults import MAX_BATCH_SIZE, MAX_SEQ_LEN
from tuner.errors import AdvisorError
from tuner.memory.estimate import PARTS, TrainSetup, model_shape
from tuner.memory.report import (
    FSDP_GPUS,
    feasible_text,
    memory_options,
    memory_report,
    options_text,
    peak_meaning,
    weights_refusal,
)
from tuner.memory.sizes import format_size, parse_size
from tuner.models.limits import check_fits_model
from tuner.training.runtime import allocator


@dataclass(frozen=True, kw_only=True)
class MemoryArgs(ModelArgs):
    """`advisor memory`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py)."""

    device: str = option("cpu", choices=("cpu", "cuda"))
    """where it trains"""
    rank: int = option(16, parse=positive)
    """LoRA rank"""
    targets: str = option("all", choices=("all", "attention", "mlp", "full"))
    """LoRA targets, or full fine-tuning"""
    batch: int = option(4, parse=size(MAX_BATCH_SIZE))
    """rows per step"""
    seq: int = option(512, parse=size(MAX_SEQ_LEN))
    """tokens per row"""
    gradient_checkpointing: bool = False
    """recompute activations per layer"""
    quantize: str = option("none", choices=("none", "nf4"))
    """nf4: QLoRA, the frozen weights in 4-bit NF4"""
    nproc: int = option(FSDP_GPUS, parse=positive)
    """GPUs full fine-tuning is sharded over with FSDP, in the options under a budget"""
    memory_budget: str | None = option(None, aliases=("--budget",))
    """memory budget, e.g. 24GiB (GPU memory, or RAM on CPU)"""
    json: bool = False
    """print the estimate as JSON on stdout"""


def memory(args: MemoryArgs) -> int:
    """Estimate the memory of a LoRA (or full) fine-tuning step from the model's config, before anything runs.

    The breakdown: weights, trainable parameters, their gradients and optimizer state, activations and logits.
    With --memory-budget, whether it fits and the largest rank, batch and sequence length that do, with gradient
    checkpointing if needed, and where only QLoRA (4-bit weights) would fit.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    try:
        setup = TrainSetup(
            device=args.device,
            targets=args.targets,
            rank=args.rank,
            batch=args.batch,
            seq_len=args.seq,
            gradient_checkpointing=args.gradient_checkpointing,
            quantized=args.quantize == "nf4",
        )
        budget_bytes = parse_size(args.memory_budget) if args.memory_budget is not None else None
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    check_fits_model(args.model, seq_len=args.seq, rank=None if args.targets == "full" else args.rank)
    shape = model_shape(args.model)
    if budget_bytes is not None:
        refusal = weights_refusal(shape, setup, budget_bytes)
        if refusal:
            raise AdvisorError(refusal)
    report = {
        **memory_report(args.model, shape, setup, budget_bytes),
        "total_is": peak_meaning(args.device, allocator()),
        "options": memory_options(shape, setup, budget_bytes, args.nproc),
    }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    what = "full fine-tuning" if args.targets == "full" else f"LoRA r={args.rank} on {args.targets}"
    what = what.replace("LoRA", "QLoRA", 1) if setup.quantized else what
    console = Console()
    console.print(f"{args.model}: {what}, batch {args.batch} x {args.seq} tokens on {args.device}")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("part")
    table.add_column("memory", justify="right")
    for part in PARTS:
        table.add_row(part, format_size(report[f"{part}_bytes"]))
    table.add_row("total", format_size(report["total_bytes"]), style="bold")
    console.print(table)
    console.print(f"The total is {report['total_is']}.")
    if budget_bytes is not None:
        console.print(feasible_text(report))
        console.print(f"Ways to train at batch {args.batch} x {args.seq} tokens:", highlight=False)
        console.print(options_text(report["options"]), highlight=False)
    return 0
