"""The first run: README.md's main command on a cold score cache, timed, with what it gave.

Runs the `advisor tune ...` of the README's quick start as written (its own output shown), in a fresh run
directory and with an empty score cache (the converted model is reused from the usual cache unless
`--cold-model`), then prints the wall time, the training time (the range test and every trial, as the run
directory records them), the scoring time, the rest, the ratio wall / training, and whether learning and
forgetting scores came out. Target: ratio <= 2 with scores present.

    python bench/first_run.py [--cold-model] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0


def readme_command() -> tuple[dict[str, str], list[str]]:
    """The environment and arguments of the README's main command (its `advisor tune ...` part)."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.strip().startswith("$ ") and "advisor tune" in line:  # the quick start's first `advisor tune`
            part = next(piece for piece in line.strip()[2:].split("&&") if "advisor tune" in piece)
            words = shlex.split(part)
            env = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
            return env, [word for word in words if not re.match(r"^[A-Z_]+=", word)]
    raise SystemExit("README.md has no quick-start line with `advisor tune`")


def without_out(arguments: list[str]) -> list[str]:
    """The arguments without --out and its value (the bench gives its own)."""
    kept, skip = [], False
    for word in arguments:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif not word.startswith("--out="):
            kept.append(word)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-model", action="store_true", help="convert the GGUF model again too")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    env_words, arguments = readme_command()
    with tempfile.TemporaryDirectory(prefix="first-run-") as scratch:
        cache, run_dir = Path(scratch) / "cache", Path(scratch) / "run"
        cache.mkdir()
        usual = Path(os.environ.get("ADVISOR_CACHE_DIR", Path.home() / ".cache" / "lora-advisor")) / "models"
        if not args.cold_model and usual.is_dir():
            (cache / "models").symlink_to(usual)
        env = {**os.environ, **{k: str((ROOT / v).resolve()) if "/" in v else v for k, v in env_words.items()}}
        env["ADVISOR_CACHE_DIR"] = str(cache)
        command = [*without_out(arguments), "--out", str(run_dir)]
        print("$", " ".join(command), flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the README's command failed (exit {done.returncode})")
        trials = [json.loads(p.read_text()) for p in sorted((run_dir / "trials").glob("trial_*.json"))]
        range_test = run_dir / "range_test.json"
        ranged = json.loads(range_test.read_text()).get("seconds", 0.0) if range_test.is_file() else 0.0
        training = sum(t.get("train_seconds") or 0.0 for t in trials) + ranged
        recommendation = json.loads((run_dir / "recommendation.json").read_text())
    scores = recommendation.get("scores") or {}
    pick = scores.get("pick") or {}
    scoring = (scores.get("seconds") or {}).get("measured", 0.0)
    present = bool(pick.get("general") and pick.get("learning"))
    ratio = wall / training if training else float("inf")
    print(f"\nwall {wall:.0f} s | training {training:.0f} s (range test {ranged:.0f} s, {len(trials)} trials)")
    print(f"scoring the pick and the base {scoring:.0f} s | the rest {wall - training - scoring:.0f} s")
    if present:
        general, learning = pick["general"], pick["learning"]
        print(
            f"scores on {pick['items']} items per benchmark: general mean {general['score']:.3f} ± "
            f"{general['stderr']:.3f} (base {general['base']:.3f}), {learning['benchmark']} {learning['score']:.3f} ± "
            f"{learning['stderr']:.3f} (base {learning['base']:.3f})"
        )
    verdict = "met" if present and ratio <= TARGET_RATIO else "NOT met"
    print(f"ratio wall / training {ratio:.2f}, scores {'present' if present else 'MISSING'} (target <= 2: {verdict})")
    if args.json:
        figures = {"wall_s": wall, "training_s": training, "scoring_s": scoring, "ratio": ratio, "scores": present}
        print(json.dumps(figures))
    sys.exit(0)


if __name__ == "__main__":
    main()
