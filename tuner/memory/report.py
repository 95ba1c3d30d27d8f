"""What fits a memory budget, and the estimate's report and text: the largest rank, batch and row length under a
budget, why a budget cannot hold even the weights, and what the estimated peak is a prediction of (pure)."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from tuner.memory.estimate import ModelShape, TrainSetup, estimate
from tuner.memory.sizes import format_size

RANKS = (256, 128, 64, 32, 16, 8)
BATCHES = (32, 16, 8, 4, 2, 1)
SEQ_LENS = (4096, 2048, 1024, 512, 256, 128)


def fits(shape: ModelShape, setup: TrainSetup, budget: int) -> bool:
    return estimate(shape, setup).total <= budget


def largest_feasible(shape: ModelShape, setup: TrainSetup, budget: int) -> dict[str, Any]:
    """Under a budget, without and with gradient checkpointing: the largest rank at the setup's batch and length,
    the largest batch and the longest rows at its rank; and whether only QLoRA (4-bit weights) would fit."""
    found: dict[str, Any] = {"budget_bytes": budget}
    for checkpointing in (False, True):
        base = replace(setup, gradient_checkpointing=checkpointing)
        ranks = () if setup.targets == "full" else RANKS
        found["with_checkpointing" if checkpointing else "without_checkpointing"] = {
            "rank": next((r for r in ranks if fits(shape, replace(base, rank=r), budget)), None),
            "batch": next((b for b in BATCHES if fits(shape, replace(base, batch=b), budget)), None),
            "seq_len": next((n for n in SEQ_LENS if fits(shape, replace(base, seq_len=n), budget)), None),
        }
    smallest = replace(setup, gradient_checkpointing=True, rank=8, batch=1, seq_len=min(SEQ_LENS))
    lora = setup.targets if setup.targets != "full" else "all"
    found["smallest_fits"] = fits(shape, smallest, budget)
    found["qlora_fits"] = fits(shape, replace(smallest, targets=lora, quantized=True), budget)
    return found


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


GLIBC_RETAINED = 1.8
"""glibc's default allocator keeps up to this much more at the peak than the estimate (bench/memory_estimate.py
--allocators)."""


def peak_meaning(device: str, allocator: str) -> str:
    """What the estimate's total is a prediction of, on this device and with this process allocator."""
    if device == "cuda":
        return (
            "the peak memory held by tensors (torch.cuda.max_memory_allocated); PyTorch's caching allocator "
            "reserves somewhat more from the GPU, and nvidia-smi shows the reserved figure"
        )
    if allocator == "jemalloc":
        return "the peak resident memory of a trial or `advisor train` started here (advisor runs with jemalloc)"
    return (
        "the peak resident memory with freed memory returned at once (trials under --memory-budget); glibc's "
        f"default allocator keeps freed memory, so other runs here can peak up to {GLIBC_RETAINED:g}x higher: "
        "install jemalloc (Debian: libjemalloc2), which advisor then runs with"
    )


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


FSDP_GPUS = 8
"""GPUs the full fine-tuning row shards over when none are named: a node of eight."""


def memory_options(shape: ModelShape, setup: TrainSetup, budget: int | None, gpus: int = FSDP_GPUS) -> list[dict]:
    """The ways to train at the setup's rank, targets, batch and row length, each with its estimated peak (per GPU)
    and, under a budget, whether it fits: 16-bit LoRA and QLoRA, without and with gradient checkpointing, full
    fine-tuning on one GPU and sharded with FSDP over `gpus` (with checkpointing, as sharded runs are)."""
    lora = replace(setup, targets=setup.targets if setup.targets != "full" else "all", variant="lora", shards=1)
    full = replace(lora, targets="full", quantized=False, gradient_checkpointing=False)
    what = f"r={lora.rank} on {lora.targets}"
    rows = [
        ("lora", f"LoRA {what}, 16-bit weights", replace(lora, quantized=False, gradient_checkpointing=False)),
        ("lora+ckpt", "  + gradient checkpointing", replace(lora, quantized=False, gradient_checkpointing=True)),
        ("qlora", f"QLoRA {what}, 4-bit NF4 weights", replace(lora, quantized=True, gradient_checkpointing=False)),
        ("qlora+ckpt", "  + gradient checkpointing", replace(lora, quantized=True, gradient_checkpointing=True)),
        ("full", "full fine-tuning" + (", one GPU" if setup.device == "cuda" else ""), replace(full)),
    ]
    if setup.device == "cuda" and gpus > 1:
        fsdp = replace(full, gradient_checkpointing=True, shards=gpus)
        rows.append(("full+fsdp", f"full fine-tuning, FSDP over {gpus} GPUs (per GPU)", fsdp))
    options = []
    for key, label, option in rows:
        total = estimate(shape, option).total
        options.append(
            {"option": key, "label": label, "total_bytes": total, "fits": None if budget is None else total <= budget}
        )
    return options


def options_text(options: list[dict]) -> str:
    """The options as aligned lines: label, estimate, and whether each fits where a budget was given."""
    width = max(len(option["label"]) for option in options)
    lines = []
    for option in options:
        verdict = {True: "fits", False: "does not fit", None: ""}[option["fits"]]
        lines.append(f"  {option['label']:{width}s} {format_size(option['total_bytes']):>10s}  {verdict}".rstrip())
    return "\n".join(lines)


CHECKPOINTING_SPEED: dict[str, float | None] = {"cpu": 0.73, "cuda": None}
"""Training tokens per second with gradient checkpointing over without, by device: on the CPU the mean of 0.70-0.77x
over four configurations of SmolLM2-135M (bench/memory_estimate.py --modes ckpt); None where not measured."""


def checkpointing_cost(device: str) -> str:
    """What gradient checkpointing costs in speed on a device, as measured, in a sentence."""
    ratio = CHECKPOINTING_SPEED.get(device)
    if ratio is None:
        return (
            "It recomputes each layer's forward pass once more, about a third more compute per step; not yet measured "
            f"on {device} (bench/memory_estimate.py --modes ckpt)."
        )
    return f"It trains at {ratio:.2f}x the speed without it on {device} (bench/memory_estimate.py --modes ckpt)."
