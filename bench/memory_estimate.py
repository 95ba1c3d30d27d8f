"""Predicted against measured training memory of SmolLM2-135M for several LoRA configurations.

Each configuration is measured in a fresh process by `python -m tuner.memory_probe` (two optimizer steps of
the trial runner; on CPU the peak resident memory after the model loaded minus the resident memory before
it, with freed memory returned to the kernel as the advisor's trials do; on CUDA max_memory_allocated) and
set beside `tuner.memory.estimate`. Target: every error within 10 %.

    python bench/memory_estimate.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tuner.memory import ModelShape, TrainSetup, estimate, format_size

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
TARGET_ERROR = 0.10


def measured(rank: int, targets: str, batch: int, seq_len: int) -> int:
    command = [sys.executable, "-m", "tuner.memory_probe", "--rank", str(rank), "--targets", targets]
    command += ["--batch", str(batch), "--seq-len", str(seq_len)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return int(json.loads(done.stdout.strip().splitlines()[-1])["measured_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    import torch

    from tuner.models import DEFAULT_MODEL, model_config, resolve_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = ModelShape.from_config(model_config(resolve_model(DEFAULT_MODEL)))
    rows = []
    print(f"{'config':28s} {'predicted':>11s} {'measured':>11s} {'error':>7s}")
    for rank, targets, batch, seq_len in CONFIGS:
        predicted = estimate(shape, TrainSetup(device=device, rank=rank, targets=targets, batch=batch, seq_len=seq_len))
        actual = measured(rank, targets, batch, seq_len)
        error = predicted.total / actual - 1
        label = f"r={rank} {targets} {batch}x{seq_len}"
        print(f"{label:28s} {format_size(predicted.total):>11s} {format_size(actual):>11s} {error:+7.1%}", flush=True)
        rows.append({"config": label, "predicted_bytes": predicted.total, "measured_bytes": actual, "error": error})
    worst = max(abs(row["error"]) for row in rows)
    verdict = "met" if worst <= TARGET_ERROR else "NOT met"
    print(f"worst error {worst:.1%} over {len(rows)} configurations on {device} (target <= 10%: {verdict})")
    if args.json:
        print(json.dumps({"device": device, "rows": rows, "worst_error": worst}))


if __name__ == "__main__":
    main()
