"""`advisor memory`: what a training setup needs, part by part, and what fits a budget."""

from __future__ import annotations

import json
import sys

from tuner.errors import AdvisorError
from tuner.memory.estimate import (
    PARTS,
    TrainSetup,
    feasible_text,
    format_size,
    memory_report,
    model_shape,
    parse_size,
    peak_meaning,
    weights_refusal,
)
from tuner.models.limits import check_fits_model
from tuner.training.runtime import allocator


def memory(
    *,
    model: str,
    device: str = "cpu",
    rank: int = 16,
    targets: str = "all",
    batch: int = 4,
    seq_len: int = 512,
    gradient_checkpointing: bool = False,
    budget: str | None = None,
    json_output: bool = False,
) -> int:
    """Estimate the memory of a LoRA (or full) fine-tuning step from the model's config, before anything runs.

    The breakdown: weights, trainable parameters, their gradients and optimizer state, activations and logits.
    With --budget, whether it fits and the largest rank, batch and sequence length that do, with gradient
    checkpointing if needed, and where only QLoRA (4-bit weights) would fit.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    try:
        setup = TrainSetup(
            device=device,
            targets=targets,
            rank=rank,
            batch=batch,
            seq_len=seq_len,
            gradient_checkpointing=gradient_checkpointing,
        )
        budget_bytes = parse_size(budget) if budget is not None else None
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    check_fits_model(model, seq_len=seq_len, rank=None if targets == "full" else rank)
    shape = model_shape(model)
    if budget_bytes is not None:
        refusal = weights_refusal(shape, setup, budget_bytes)
        if refusal:
            raise AdvisorError(refusal)
    report = {**memory_report(model, shape, setup, budget_bytes), "total_is": peak_meaning(device, allocator())}
    if json_output:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    what = "full fine-tuning" if targets == "full" else f"LoRA r={rank} on {targets}"
    console = Console()
    console.print(f"{model}: {what}, batch {batch} x {seq_len} tokens on {device}")
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
    return 0
