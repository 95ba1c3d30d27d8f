"""Predicted against measured training memory for several LoRA configurations, measured as the advisor runs them.

Each configuration is measured in a fresh process by `python -m tuner.memory.probe` (the trial runner's own
optimizer steps): on CPU the peak resident memory after the model loaded minus the resident memory before it,
under the allocator the advisor starts its runs with (jemalloc where it is installed: `advisor` restarts itself
with it preloaded); on CUDA max_memory_allocated (what the estimate counts) and max_memory_reserved (what the
caching allocator took, as nvidia-smi shows it), both set beside `tuner.memory.estimate.estimate`. Target: every error
within 10 %.

`--allocators` measures, side by side for a few configurations, the CPU peak and speed under glibc's default,
glibc with freed memory returned at once (a fixed 64 KiB mmap threshold, what a trial under --memory-budget
uses where jemalloc is missing) and jemalloc.

`--modes` also measures QLoRA (nf4: the linear weights in 4-bit NF4), gradient checkpointing (ckpt) and both on a few
configurations (all four by default).

    python bench/memory_estimate.py [--model M] [--modes 16bit,nf4,ckpt,nf4+ckpt] [--allocators] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tuner.memory.estimate import ModelShape, TrainSetup, estimate
from tuner.memory.sizes import format_size
from tuner.training.runtime import ALLOCATOR_VARIABLE, find_jemalloc, jemalloc_environment

CONFIGS = [  # rank, targets, batch, sequence length
    (16, "all", 4, 256),
    (16, "all", 1, 256),
    (16, "all", 4, 128),
    (256, "all", 4, 256),
    (16, "attention", 4, 256),
    (16, "mlp", 4, 256),
    (64, "all", 4, 256),
    (16, "all", 1, 512),
    (16, "all", 4, 512),
    (16, "all", 2, 1024),
    (16, "all", 8, 128),
    (8, "all", 2, 256),
]
MODE_CONFIGS = [(16, "all", 4, 256), (256, "all", 4, 256), (16, "all", 4, 512), (16, "mlp", 4, 256)]
"""The configurations measured in the other modes (--modes): QLoRA's 4-bit weights, gradient checkpointing, both;
each is among CONFIGS, so its speed is set beside the 16-bit one's."""
MODES = {"16bit": {}, "nf4": {"quantized": True}, "ckpt": {"gradient_checkpointing": True}}
MODES["nf4+ckpt"] = {**MODES["nf4"], **MODES["ckpt"]}
ALLOCATOR_CONFIGS = [(16, "all", 4, 256), (256, "all", 4, 256), (16, "attention", 8, 512)]
TARGET_ERROR = 0.10


def probe(
    model: str, config: tuple[int, str, int, int], env: dict[str, str], *extra: str, steps: int = 2
) -> dict[str, object]:
    """One configuration measured by tuner.memory.probe in a fresh process with this environment."""
    rank, targets, batch, seq_len = config[:4]
    command = [sys.executable, "-m", "tuner.memory.probe", "--model", model, "--rank", str(rank)]
    command += ["--targets", targets, "--batch", str(batch), "--seq-len", str(seq_len), "--steps", str(steps), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**env, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"memory probe failed for {config}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def advisor_environment() -> dict[str, str]:
    """The environment the advisor runs its trials in: jemalloc preloaded where it is installed."""
    return jemalloc_environment(os.environ) or dict(os.environ)


def compare_allocators(model: str) -> list[dict[str, object]]:
    """CPU peak and speed of a few configurations under glibc's default, glibc returning freed memory, jemalloc."""
    glibc = {**os.environ, ALLOCATOR_VARIABLE: "glibc"}
    modes = [("glibc default", glibc, ()), ("glibc, freed memory returned", glibc, ("--return-freed-memory",))]
    if find_jemalloc() is not None:
        modes.append(("jemalloc", advisor_environment(), ()))
    rows = []
    print(f"\n{'config':26s} {'allocator':30s} {'peak':>10s} {'tokens/s':>9s} {'vs glibc':>9s}")
    for config in ALLOCATOR_CONFIGS:
        first = None
        for name, env, extra in modes:
            figures = probe(model, config, env, *extra, steps=6)
            speed = float(figures["tokens_per_second"])  # type: ignore[arg-type]
            first = first or speed
            label = f"r={config[0]} {config[1]} {config[2]}x{config[3]}"
            peak = format_size(int(figures["measured_bytes"]))  # type: ignore[arg-type]
            print(f"{label:26s} {name:30s} {peak:>10s} {speed:9.1f} {speed / first:8.2f}x", flush=True)
            rows.append({"config": label, "allocator": name, **figures})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model name or directory (default: the built-in model)")
    parser.add_argument("--allocators", action="store_true", help="also compare CPU allocators side by side")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument(
        "--modes",
        default="16bit,nf4,ckpt,nf4+ckpt",
        help="which of 16bit (every configuration), nf4 (QLoRA), ckpt (gradient checkpointing), nf4+ckpt to measure",
    )
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per probe (its speed is over them all)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or any(mode not in MODES for mode in modes):
        parser.error(f"--modes takes {', '.join(MODES)}, got {args.modes!r}")
    import torch

    from tuner.models.load import DEFAULT_MODEL, model_config, resolve_model

    model = args.model or DEFAULT_MODEL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = ModelShape.from_config(model_config(resolve_model(model)))
    env = advisor_environment()
    rows = []
    reserved_column = f" {'reserved':>11s} {'error':>7s}" if device == "cuda" else ""
    print(f"{'config':36s} {'predicted':>11s} {'measured':>11s} {'error':>7s}{reserved_column}")
    allocator = None
    runs = [(mode, config) for mode in modes for config in (CONFIGS if mode == "16bit" else MODE_CONFIGS)]
    for mode, (rank, targets, batch, seq_len) in runs:
        setup = TrainSetup(device=device, rank=rank, targets=targets, batch=batch, seq_len=seq_len, **MODES[mode])
        predicted = estimate(shape, setup).total
        flags = ["--quantize", "nf4"] if setup.quantized else []
        flags += ["--gradient-checkpointing"] if setup.gradient_checkpointing else []
        figures = probe(model, (rank, targets, batch, seq_len), env, *flags, steps=args.steps)
        allocator = figures["allocator"]
        actual = int(figures["measured_bytes"])  # type: ignore[arg-type]
        error = predicted / actual - 1
        label = f"{mode} r={rank} {targets} {batch}x{seq_len}"
        line = f"{label:36s} {format_size(predicted):>11s} {format_size(actual):>11s} {error:+7.1%}"
        row = {"config": label, "predicted_bytes": predicted, "measured_bytes": actual, "error": error}
        row["tokens_per_second"] = figures["tokens_per_second"]
        if figures.get("reserved_bytes"):
            reserved = int(figures["reserved_bytes"])  # type: ignore[arg-type]
            row |= {"reserved_bytes": reserved, "reserved_error": predicted / reserved - 1}
            line += f" {format_size(reserved):>11s} {row['reserved_error']:+7.1%}"
        print(line, flush=True)
        rows.append(row)
    speeds = {row["config"]: row["tokens_per_second"] for row in rows}
    for row in rows:
        mode, _, config = str(row["config"]).partition(" ")
        plain = speeds.get(f"16bit {config}")
        if mode != "16bit" and plain:
            row["speed_vs_16bit"] = float(row["tokens_per_second"]) / float(plain)  # type: ignore[arg-type]
            print(f"{mode} {config}: {row['speed_vs_16bit']:.2f}x the 16-bit speed")
    worst = max(abs(row["error"]) for row in rows)  # type: ignore[arg-type]
    verdict = "met" if worst <= TARGET_ERROR else "NOT met"
    where = f"{len(rows)} configurations on {device}, {allocator}"
    print(f"worst error {worst:.1%} over {where} (target <= 10%: {verdict})")
    if device == "cuda":
        worst_reserved = max(abs(row["reserved_error"]) for row in rows)  # type: ignore[arg-type]
        print(f"against reserved memory (what nvidia-smi shows): worst error {worst_reserved:.1%}")
    compared = compare_allocators(model) if args.allocators and device == "cpu" else []
    if args.json:
        figures = {"device": device, "allocator": allocator, "rows": rows, "worst_error": worst}
        print(json.dumps({**figures, "allocators": compared}))


if __name__ == "__main__":
    main()
