"""Evaluation throughput per benchmark on the real model, and the share of a trial's time that scoring takes.

Part 1, side by side in one process: items per second on each benchmark for SmolLM2-135M alone and with an
unmerged LoRA adapter (r=16, all linear layers) attached, the way a trial is scored. The ratio checks the
ADAPTER_OVERHEAD the study allows for when it sizes its subsets.

Part 2: a one-trial study with scoring sized automatically; the trial's scoring time against its training
time (target: at most EVAL_SHARE, 20 %).

    python bench/eval_throughput.py [--items 8] [--trial-tokens 32768]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TASKS = ("hellaswag", "winogrande", "arc_challenge", "gsm8k", "humaneval")


def throughput(items: int, data_dir: Path) -> dict[str, dict[str, float]]:
    """Items per second of each benchmark, base model against base plus an r=16 all-linear adapter."""
    from peft import get_peft_model

    from tuner.models.load import DEFAULT_MODEL, load_model, load_tokenizer, resolve_model
    from tuner.scoring.benchmarks import EvalSettings
    from tuner.scoring.evaluation import score_model
    from tuner.settings import LoraSettings
    from tuner.training.runtime import pick_runtime, quiet_libraries
    from tuner.training.trial import peft_config

    quiet_libraries()
    source, runtime = resolve_model(DEFAULT_MODEL), pick_runtime()
    tokenizer, model = load_tokenizer(source), load_model(source, runtime.device, runtime.dtype)
    adapted = get_peft_model(model, peft_config(LoraSettings(rank=16, alpha=32, targets="all")))
    figures = {}
    for task in TASKS:
        settings = EvalSettings(tasks=(task,), limit=items, allow_code_execution=True)
        with adapted.disable_adapter():
            base = score_model(adapted, tokenizer, settings, data_dir, runtime)[task]
        with_adapter = score_model(adapted, tokenizer, settings, data_dir, runtime)[task]
        figures[task] = {
            "items": base.items,
            "base_items_per_s": round(base.items_per_second(), 3),
            "adapter_items_per_s": round(with_adapter.items_per_second(), 3),
            "adapter_time_ratio": round(with_adapter.seconds / base.seconds, 3),
        }
        print(
            f"{task:14s} {base.items:3d} items  base {base.items_per_second():7.3f} items/s  "
            f"with adapter {with_adapter.items_per_second():7.3f} items/s  "
            f"time ratio {with_adapter.seconds / base.seconds:5.2f}",
            flush=True,
        )
    return figures


def trial_share(trial_tokens: int, data_dir: Path) -> dict[str, object]:
    """One real trial with automatically sized scoring: scoring seconds over training seconds."""
    from tuner.models.load import DEFAULT_MODEL
    from tuner.settings import DataSettings, StudySettings, TrainBudget
    from tuner.study.options import StudyOptions
    from tuner.study.run import run_study

    budget = TrainBudget(train_tokens=trial_tokens, seq_len=256)
    settings = StudySettings(model=DEFAULT_MODEL, data=DataSettings("math"), trials=1, budget=budget)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        recommendation = run_study(settings, Path(run_dir) / "run", StudyOptions(data_dir=data_dir))
        wall = time.perf_counter() - started
        trial = json.loads(next((Path(run_dir) / "run" / "trials").glob("*.json")).read_text())
        attrs = recommendation.to_json()["scores"] or {}
    plan = attrs.get("plan") or {}
    if plan.get("mode") == "pick":  # too short to score on its own: the pick and the base were scored after it
        scoring, items = (attrs.get("seconds") or {}).get("measured", 0.0), attrs.get("items")
        what, target = "the pick and the base model", "target <= 50%"
    else:
        scoring, items, what, target = trial["scoring_seconds"], plan.get("limit"), "the trial", "target <= 20%"
    share = scoring / trial["train_seconds"] if trial["train_seconds"] else 0.0
    print(
        f"trial of {trial_tokens} tokens: trained {trial['train_seconds']:.1f} s; {what} scored on {items} items per "
        f"benchmark in {scoring:.1f} s: {share:.1%} of its training time ({target}); study wall {wall:.0f} s",
        flush=True,
    )
    return {
        "train_seconds": trial["train_seconds"],
        "scoring_seconds": round(scoring, 2),
        "share": round(share, 4),
        "plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8, help="items per benchmark in part 1 (default: 8)")
    parser.add_argument("--trial-tokens", type=int, default=32768, help="tokens of the part-2 trial (default: 32768)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from tuner.data.load import resolve_data_dir

    data_dir = resolve_data_dir(None)
    if data_dir is None:
        parser.error("set ADVISOR_DATA_DIR to the data mirror (../shared/data)")
    figures = {"throughput": throughput(args.items, data_dir), "trial": trial_share(args.trial_tokens, data_dir)}
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
