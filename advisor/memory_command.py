"""`advisor memory`: what a training setup needs, part by part, and what fits a budget."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict, replace
from typing import Any

from advisor.memory import (
    ModelShape,
    TrainSetup,
    estimate,
    format_size,
    largest_feasible,
    parse_size,
)
from tuner.errors import AdvisorError

PARTS = ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead")


@functools.cache
def model_shape(model: str) -> ModelShape:
    """The shape of a model from its config, without loading its weights (a GGUF model is cached once).

    Kept per process: the app asks on every keystroke of a budget, and a hub model's config is a request.
    """
    from tuner.models import model_config, resolve_model

    try:
        return ModelShape.from_config(model_config(resolve_model(model)))
    except ValueError as error:
        raise AdvisorError(f"{model}: {error}") from None


def weights_refusal(shape: ModelShape, setup: TrainSetup, budget: int) -> str | None:
    """Why a budget cannot hold even the model's weights, with what would fit instead; None when it can."""
    weights = estimate(shape, setup).weights
    if budget >= weights:
        return None
    smallest = replace(setup, rank=8, batch=1, seq_len=128, gradient_checkpointing=True)
    needed = estimate(shape, smallest).total
    qlora = estimate(shape, replace(smallest, quantized=True)).total
    instead = f"QLoRA (4-bit weights, r=8, batch 1 x 128 tokens, checkpointing) needs {format_size(qlora)}" + (
        " and fits" if qlora <= budget else ""
    )
    return (
        f"a budget of {format_size(budget)} is below the model's weights alone ({format_size(weights)} on "
        f"{setup.device}); the smallest LoRA setup needs {format_size(needed)}; {instead}"
    )


def memory_report(model: str, shape: ModelShape, setup: TrainSetup, budget: int | None) -> dict[str, Any]:
    """The estimate, and under a budget whether it fits and the largest settings that do."""
    report: dict[str, Any] = {
        "model": model,
        "shape": asdict(shape),
        "parameters": shape.parameters(),
        "setup": asdict(setup),
        **estimate(shape, setup).as_dict(),
    }
    if budget is not None:
        report["budget_bytes"] = budget
        report["fits"] = report["total_bytes"] <= budget
        report["largest_feasible"] = largest_feasible(shape, setup, budget)
    return report


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
    shape = model_shape(model)
    if budget_bytes is not None:
        refusal = weights_refusal(shape, setup, budget_bytes)
        if refusal:
            raise AdvisorError(refusal)
    report = memory_report(model, shape, setup, budget_bytes)
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
    if budget_bytes is not None:
        console.print(feasible_text(report))
    return 0


def feasible_text(report: dict[str, Any]) -> str:
    """Whether the setup fits the budget, and the largest settings that do."""
    budget, found, setup = report["budget_bytes"], report["largest_feasible"], report["setup"]
    verdict = "fits" if report["fits"] else "does not fit"
    lines = [f"This setup {verdict} in {format_size(budget)}. Largest that fit:"]
    for key, label in (("without_checkpointing", "without"), ("with_checkpointing", "with")):
        options = found[key]
        parts = []
        if options["rank"] is not None:
            parts.append(f"rank {options['rank']} at batch {setup['batch']} x {setup['seq_len']}")
        if options["batch"] is not None:
            parts.append(f"batch {options['batch']} x {setup['seq_len']}")
        if options["seq_len"] is not None:
            parts.append(f"{options['seq_len']} tokens at batch {setup['batch']}")
        lines.append(f"  {label} gradient checkpointing: {'; '.join(parts) if parts else 'nothing'}")
    if not found["smallest_fits"]:
        qlora = "only QLoRA (4-bit weights) fits" if found["qlora_fits"] else "not even QLoRA fits"
        lines.append(f"  at r=8, batch 1 x 128 tokens with checkpointing: {qlora}")
    return "\n".join(lines)
