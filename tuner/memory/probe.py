"""Measured training memory of one LoRA configuration: the figure the estimator is checked against.

On CPU: the process's peak resident memory (VmHWM) during a few optimizer steps, reset after the model
has loaded (by writing 5 to /proc/self/clear_refs), minus its resident memory before the model loaded.
On CUDA: torch.cuda.max_memory_allocated() (what tensors held at the peak; the estimate's figure) and
max_memory_reserved() (what the caching allocator took from the driver, which nvidia-smi shows). The steps
are the trial runner's own (`run_trial`) on
packed rows of random tokens with example boundaries like real data, so the attention mask is the same.
Run it in a fresh process per configuration (`python -m tuner.memory.probe ...`): freed memory stays in
the allocator and would hide the next configuration's peak.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def _status(field: str) -> int:
    """A /proc/self/status memory figure in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def synthetic_rows(vocab: int, rows: int, seq_len: int, seed: int = 0) -> object:
    """Packed rows of random tokens, examples of 40-400 tokens as in instruction data, labels on every token."""
    from tuner.data.packing import pack

    chooser = random.Random(seed)
    examples = []
    while sum(len(ids) for ids, _ in examples) < (rows + 1) * seq_len:
        ids = [chooser.randrange(vocab) for _ in range(chooser.randint(40, 400))]
        examples.append((ids, ids))
    return pack(examples, seq_len).head(rows)


def measure(
    model: str,
    rank: int,
    targets: str,
    batch: int,
    seq_len: int,
    steps: int = 2,
    return_freed_memory_too: bool = False,
    quantize: str | None = None,
    gradient_checkpointing: bool = False,
) -> dict[str, object]:
    """Train `steps` optimizer steps of one LoRA configuration (on 4-bit weights with quantize 'nf4', recomputing
    activations with gradient_checkpointing) and report the measured peak memory."""
    import torch

    from tuner.data.prepare import StudyData
    from tuner.models.load import load_model, resolve_model
    from tuner.settings import LoraSettings, TrainBudget
    from tuner.training.runtime import pick_runtime, quiet_libraries, return_freed_memory
    from tuner.training.trial import run_trial

    quiet_libraries()
    if return_freed_memory_too:
        return_freed_memory()
    source, runtime = resolve_model(model), pick_runtime()
    before = _status("VmRSS")
    loaded = load_model(source, runtime.device, runtime.dtype, quantize)
    vocab = int(loaded.config.vocab_size)
    train = synthetic_rows(vocab, batch * steps, seq_len)
    heldout = synthetic_rows(vocab, batch, seq_len, seed=1)
    data = StudyData(train, heldout, heldout, batch * steps, batch)  # type: ignore[arg-type]
    budget = TrainBudget(train_tokens=batch * seq_len * steps, batch_size=batch, seq_len=seq_len, evaluations=1)
    lora = LoraSettings(rank=rank, alpha=2 * rank, targets=targets)
    if runtime.is_cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now, with the model loaded
    result = run_trial(
        loaded, data, lora, 1e-4, budget, runtime, start_loss=20.0, gradient_checkpointing=gradient_checkpointing
    )
    reserved = None
    if runtime.is_cuda:
        measured, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    else:
        measured = _status("VmHWM") - before
    return {
        "device": runtime.device.type,
        "allocator": "cuda caching allocator" if runtime.is_cuda else allocator_mode(return_freed_memory_too),
        "rank": rank,
        "targets": targets,
        "batch": batch,
        "seq_len": seq_len,
        "quantize": quantize,
        "gradient_checkpointing": gradient_checkpointing,
        "measured_bytes": measured,
        "reserved_bytes": reserved,
        "steps": len(result.train_curve),
        "tokens_per_second": round(result.tokens_per_second(), 1),
    }


def allocator_mode(returns_freed_memory: bool) -> str:
    """The CPU allocator mode a probe ran under, in words."""
    from tuner.training.runtime import allocator

    if allocator() == "jemalloc":
        return "jemalloc"
    return "glibc, mmap threshold 64 KiB" if returns_freed_memory else "glibc default"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="all")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--return-freed-memory",
        action="store_true",
        help="fix glibc's mmap threshold at 64 KiB, as a trial under --memory-budget does where jemalloc is missing",
    )
    parser.add_argument("--quantize", choices=("nf4",), default=None, help="QLoRA: the weights in 4-bit NF4")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations per layer")
    args = parser.parse_args()
    figures = measure(
        args.model,
        args.rank,
        args.targets,
        args.batch,
        args.seq_len,
        args.steps,
        args.return_freed_memory,
        args.quantize,
        args.gradient_checkpointing,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
