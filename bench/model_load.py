"""Load time of the built-in GGUF model against the plain safetensors copy the advisor caches.

Transformers dequantises a GGUF file on every load; the advisor does that once, saves a plain copy
under ADVISOR_CACHE_DIR and loads that from then on. Measured in one process, against a fresh
temporary cache so the first build is really cold: the cache build (GGUF load + save), then GGUF
loads on their own and loads of the cached copy (medians of --repeats). The target is a cached load
at least 10x faster than a GGUF load.

    python bench/model_load.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

from tuner.models.load import BUILTIN_MODELS, CACHE_ENV, DEFAULT_MODEL, builtin_gguf, cached_gguf

TARGET_SPEEDUP = 10.0


def timed(load: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of each of `repeats` calls; what a call returns is dropped before the next."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return times


def describe(times: list[float]) -> str:
    each = ", ".join(f"{t:.2f}" for t in times)
    return f"{statistics.median(times):8.2f} s  (median of {len(times)}: {each})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="loads of each kind; the median is reported")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    # The GGUF reader's progress bar is tqdm's own, out of transformers' reach.
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    gguf_file = builtin_gguf(BUILTIN_MODELS[DEFAULT_MODEL])
    print(f"model: {DEFAULT_MODEL} ({gguf_file}, {gguf_file.stat().st_size / 2**20:.0f} MiB)")
    print(f"CPU threads: {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory(prefix="bench-model-cache-") as cache_dir:
        os.environ[CACHE_ENV] = cache_dir  # cache_root() reads it on every call
        started = time.perf_counter()
        cached_dir = cached_gguf(gguf_file)
        build_seconds = time.perf_counter() - started
        cache_mib = sum(f.stat().st_size for f in cached_dir.iterdir() if f.is_file()) / 2**20
        gguf_loads = timed(
            lambda: AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name), args.repeats
        )
        cached_loads = timed(lambda: AutoModelForCausalLM.from_pretrained(cached_dir), args.repeats)

    speedup = statistics.median(gguf_loads) / statistics.median(cached_loads)
    verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    print(f"first use (GGUF load + save):  {build_seconds:8.2f} s  ({cache_mib:.0f} MiB written)")
    print(f"GGUF load:                     {describe(gguf_loads)}")
    print(f"cached load:                   {describe(cached_loads)}")
    print(f"cached vs GGUF:                {speedup:8.1f}x faster  (target >= {TARGET_SPEEDUP:g}x: {verdict})")
    if args.json:
        figures = {
            "model": DEFAULT_MODEL,
            "cache_build_seconds": round(build_seconds, 3),
            "gguf_load_seconds": round(statistics.median(gguf_loads), 3),
            "cached_load_seconds": round(statistics.median(cached_loads), 3),
            "speedup": round(speedup, 1),
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
