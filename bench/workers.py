"""One study, many workers: the wall time of the same study run by 1, 2 and 4 worker processes, and what the shared
storage costs per trial.

Each worker count runs `advisor tune --workers N` on a fresh storage (a SQLite file, or a fresh PostgreSQL database
with --postgres URL): the same model, data, trial count and trial size. Scoring is off (--score-items 0) and the
range test skipped, so that the study is the trials plus what runs once (loading, the base model's losses, the
confirm stage). For each it prints the wall time, the search phase (first trial's start to last trial's end, from
the storage), the training tokens the trials used and their rate, and the ratios against one worker. Workers draw
their own configurations and prune on what has ended when they look, so the trials differ between runs: the
tokens column says how much work each run did, and tokens/s is the fair speed.

Then the storage's own cost: the storage operations of one trial (claim under the lock, four suggestions, three
reported rungs with the pruning question, the user attributes a trial writes, its heartbeat, tell) timed with a
fake objective that trains nothing, against SQLite and (with --postgres) PostgreSQL, as milliseconds per trial and
as a share of the first worker count's mean trial time measured above.

    python bench/workers.py                                    # SmolLM2-135M, 8 trials, 1/2/4 CPU workers
    python bench/workers.py --postgres postgresql://user@/db    # PostgreSQL (a database to create others from)
    python bench/workers.py --model /tmp/tiny --trial-tokens 4096 --seq-len 128 --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuner.models.load import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def fresh_storage(postgres: str | None, folder: Path, label: str) -> Iterator[str]:
    """A storage URL nobody has used: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if postgres is None:
        yield f"sqlite:///{folder / f'{label}.db'}"
        return
    from tuner.study.state import scratch_database

    with scratch_database(postgres, f"bench_{label}") as url:
        yield url


def tune_with_workers(workers: int, url: str, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """`advisor tune --workers N` on `url`; its wall time, search phase, tokens and trial times."""
    import optuna

    from tuner.study.state import driver_url
    from tuner.study.trials import finished_trials, trial_cost

    command = [sys.executable, "-m", "advisor.cli", "tune", "--task", args.task, "--model", args.model]
    command += ["--trials", str(args.trials), "--trial-tokens", str(args.trial_tokens)]
    command += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--score-items", "0"]
    command += ["--no-range-test", "--storage", url, "--study", "bench", "--workers", str(workers)]
    command += ["--out", str(out)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"workers: {workers} workers failed:\n{result.stderr[-3000:]}")
    study = optuna.load_study(study_name="bench", storage=driver_url(url))
    trials = finished_trials(study)
    per_step = args.batch_size * args.seq_len
    costs = [trial_cost(t, per_step) for t in trials]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    search = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    tokens = sum(tokens for tokens, _ in costs)
    return {
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "search_seconds": round(search, 1),
        "trials": len(trials),
        "tokens": tokens,
        "tokens_per_second": round(tokens / search, 1) if search == search and search > 0 else float("nan"),
        "mean_trial_seconds": round(statistics.mean(seconds for _, seconds in costs), 2),
    }


def storage_cost(url: str, trials: int) -> float:
    """Milliseconds of storage work per trial: a trial's reads and writes, with a fake objective."""
    import optuna

    from tuner.study.loop import StudyLock, run_trials
    from tuner.study.state import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="overhead", storage=open_storage(url), load_if_exists=True)
    curve = [[step, 2.0 - step / 100] for step in range(64)]

    def objective(trial: optuna.Trial) -> float:
        rate = trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True)
        trial.suggest_categorical("rank", [16, 256])
        trial.suggest_categorical("alpha", [32.0])
        trial.suggest_categorical("targets", ["all", "mlp"])
        for step in (16, 32, 64):
            trial.report(rate, step)
            trial.should_prune()
        for key, value in (("train_curve", curve), ("evaluations", curve[:3]), ("tokens_per_second", 200.0)):
            trial.set_user_attr(key, value)
        for key in ("train_seconds", "target_loss", "general_loss", "forgetting_rise"):
            trial.set_user_attr(key, 1.0)
        return rate

    lock = StudyLock(url, "overhead")
    started = time.perf_counter()
    run_trials(
        study, objective, lambda: trials, lambda: True, lock, failed=(), after=lambda _: None, wait_for_running=True
    )
    return 1000 * (time.perf_counter() - started) / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--task", default="math")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--trial-tokens", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare (default: 1,2,4)")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to create fresh databases from")
    parser.add_argument("--data-dir", default=os.environ.get("ADVISOR_DATA_DIR"))
    parser.add_argument("--overhead-trials", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        for workers in counts:
            with fresh_storage(args.postgres, Path(folder), f"w{workers}") as url:
                print(f"{workers} worker(s)...", file=sys.stderr, flush=True)
                rows.append(tune_with_workers(workers, url, Path(folder) / f"run{workers}", args))
        overhead = {}
        with fresh_storage(None, Path(folder), "overhead") as url:
            overhead["sqlite"] = storage_cost(url, args.overhead_trials)
        if args.postgres:
            with fresh_storage(args.postgres, Path(folder), "overhead") as url:
                overhead["postgresql"] = storage_cost(url, args.overhead_trials)

    one = rows[0]
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{args.trials}-trial study of {args.model}, {args.task}, {args.trial_tokens} tokens per trial, {backend}")
    print(f"{os.cpu_count()} CPU cores; each worker gets cores / workers threads\n")
    header = "| workers | wall s | search s | trials | tokens | tokens/s | wall: 1 / N | tokens/s: N / 1 |"
    print(header)
    print("|---" * 8 + "|")
    for row in rows:
        print(
            f"| {row['workers']} | {row['wall_seconds']} | {row['search_seconds']} | {row['trials']} | "
            f"{row['tokens']:,} | {row['tokens_per_second']} | {one['wall_seconds'] / row['wall_seconds']:.2f}x | "
            f"{row['tokens_per_second'] / one['tokens_per_second']:.2f}x |"
        )
    mean_trial = one["mean_trial_seconds"]  # one worker's trials: each with all the cores, as alone
    print(f"\nstorage work per trial (fake objective, no training), against {one['workers']} worker's mean trial:")
    for name, milliseconds in overhead.items():
        print(f"  {name}: {milliseconds:.0f} ms per trial = {milliseconds / 10 / mean_trial:.2f} % of {mean_trial} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "overhead_ms": overhead}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
