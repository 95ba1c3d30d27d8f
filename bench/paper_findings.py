"""The paper's findings, checked on the built-in model: LoRA against full fine-tuning on math, with error bars.

Biderman et al. 2024 (LoRA Learns Less and Forgets Less) compare LoRA with full fine-tuning at 7B scale; this
bench asks the same questions of SmolLM2-135M on this machine and says, for each, whether our figures reproduce
the paper's, do not, or cannot test it at this scale.

1. Learning rates (short trials, `run_trial`): the search-efficiency bench's runs (12 optimizer steps of 4 rows x
   256 tokens of GSM8K train, measured on 96 GSM8K *test* examples, per-row losses cached in
   bench/results/search_efficiency.json) for LoRA r 16 (alpha 2r) on all / mlp / attention, and the same runs for
   full fine-tuning (every weight) over its own rates. Each sweep is widened by 3x while its best rate sits at an
   edge. Differences are paired over the test rows.
2. The full runs (`advisor train`, as a user runs it): LoRA (all linear layers, r 16, alpha 32, the sweep's best
   rate) and full fine-tuning (its sweep's best rate) on the same examples, epochs, batch and schedule; both
   scored with the base model on the same benchmark items (GSM8K for learning; HellaSwag, WinoGrande and
   ARC-Challenge for forgetting), changes tested on the paired items.
3. `advisor spectrum` on both runs: the rank explaining 90 % of each weight change's variance.
4. `advisor eval --samples K`: distinct GSM8K solutions per problem for the base, LoRA and full fine-tuning.

    python bench/paper_findings.py                       # about 45 min on 2 CPU cores
    python bench/paper_findings.py --train-examples 64 --eval-limit 20 --samples 0   # a quicker, noisier look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_efficiency import (
    BATCH,
    CACHE,
    SEQ_LEN,
    STEPS,
    Config,
    Measurer,
    default_data_dir,
    paired_difference,
)

from tuner.models.load import DEFAULT_MODEL
from tuner.settings import TrainBudget
from tuner.study.confirm import mean_loss
from tuner.training.trial import row_losses, run_trial

LORA_RATES = (1e-4, 3e-4, 1e-3)
"""The search-efficiency grid's rates (its runs are reused from the cache)."""
FULL_RATES = (1e-5, 3e-5, 1e-4, 3e-4)
"""Full fine-tuning's: the paper's math and code rates (1e-5, 5e-5) and up."""
WIDEN = 3.0
"""A sweep whose best rate sits at an edge gets the next rate this factor beyond it (twice at most)."""
RESULTS = Path(__file__).resolve().parent / "results" / "paper_findings.json"
NOISE_SE = 2.0

Rows = list[tuple[float, int]]


class FullMeasurer(Measurer):
    """The search-efficiency bench's trials and test rows, with full fine-tuning as one more method."""

    def measure_full(self, rate: float) -> Rows | None:
        key = f"{self.scope}|full|lr{rate:.4g}"
        if key not in self.cache:
            started = time.perf_counter()
            measured: list[Rows] = []
            budget = TrainBudget(STEPS * BATCH * SEQ_LEN, BATCH, SEQ_LEN, evaluations=1)
            result = run_trial(
                self.model,
                self.data,
                None,  # every weight
                rate,
                budget,
                self.runtime,
                start_loss=mean_loss(self.base()),
                seed=0,
                on_trained=lambda tuned, _: measured.append(row_losses(tuned, self.test, BATCH, self.runtime)),
            )
            self.cache[key] = {
                "rows": measured[0] if measured else None,
                "stopped": result.stopped_reason,
                "seconds": round(time.perf_counter() - started, 1),
                "tokens_per_second": round(result.tokens_per_second(), 1),
            }
            self._save()
            loss = mean_loss(measured[0]) if measured else float("nan")
            print(f"  measured full fine-tuning lr {rate:.3g}: test loss {loss:.4f}", file=sys.stderr, flush=True)
        rows = self.cache[key]["rows"]
        return [tuple(r) for r in rows] if rows else None  # type: ignore[misc]

    def measure_method(self, method: str, rate: float) -> Rows | None:
        if method == "full":
            return self.measure_full(rate)
        return self.measure(Config(method, 16, 32.0, rate))  # LoRA r 16 on `method`, alpha 2r


def sweep(measurer: FullMeasurer, method: str, rates: tuple[float, ...]) -> dict[float, Rows]:
    """Each rate's test rows (diverged runs left out), widened past an edge where the best sits on one."""
    results = {rate: rows for rate in rates if (rows := measurer.measure_method(method, rate)) is not None}
    for _ in range(2):
        if not results:
            break
        best = min(results, key=lambda r: mean_loss(results[r]))
        ordered = sorted(set(results) | set(rates))
        if best == ordered[-1]:
            extra = float(f"{best * WIDEN:.3g}")
        elif best == ordered[0]:
            extra = float(f"{best / WIDEN:.3g}")
        else:
            break
        rows = measurer.measure_method(method, extra)
        if rows is None:
            break
        results[extra] = rows
    return results


def best_of(results: dict[float, Rows]) -> tuple[float, Rows, tuple[float, float] | None]:
    """The best rate, its rows, and its lead over the runner-up rate (paired mean difference and its error)."""
    ranked = sorted(results, key=lambda r: mean_loss(results[r]))
    best = ranked[0]
    lead = paired_difference(results[ranked[1]], results[best]) if len(ranked) > 1 else None
    return best, results[best], lead


def advisor(*args: str) -> dict[str, Any]:
    """`advisor ARGS --json` as a user runs it; its JSON report."""
    argv = [sys.executable, "-m", "advisor", *args, "--json"]
    print(f"$ advisor {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"advisor {args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--cache", default=str(CACHE), help="the search-efficiency bench's cache of trial runs")
    parser.add_argument("--out", type=Path, default=Path("runs/paper-findings"), help="where the full runs go")
    parser.add_argument("--train-examples", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-limit", type=int, default=40, help="benchmark items per benchmark (paired)")
    parser.add_argument("--samples", type=int, default=4, help="completions per GSM8K problem (0: no diversity)")
    parser.add_argument("--sample-problems", type=int, default=10)
    return parser.parse_args()


def fmt(value: float, error: float | None = None, sign: str = "") -> str:
    return f"{value:{sign}.3f}" + (f" ± {error:.3f}" if error is not None and not math.isnan(error) else "")


def verdict(holds: bool | None, clear: bool = True) -> str:
    if holds is None:
        return "not testable at this scale"
    if not holds:
        return "not reproduced"
    return "reproduced" if clear else "same direction, within noise"


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    measurer = FullMeasurer(argparse.Namespace(model=args.model, data_dir=args.data_dir, cache=args.cache))
    print(f"model {args.model}, {measurer.runtime.describe()}", file=sys.stderr)
    base_rows = measurer.base()
    rows: list[tuple[str, str, str, str]] = []
    figures: dict[str, Any] = {"model": args.model, "runtime": measurer.runtime.describe()}

    # 1. Learning rates and targets, on short trials.
    arms = {
        "full": sweep(measurer, "full", FULL_RATES),
        "all": sweep(measurer, "all", LORA_RATES),
        "mlp": sweep(measurer, "mlp", LORA_RATES),
        "attention": sweep(measurer, "attention", LORA_RATES),
    }
    bests = {name: best_of(results) for name, results in arms.items()}
    figures["sweeps"] = {
        name: {f"{rate:.3g}": round(mean_loss(r), 5) for rate, r in sorted(results.items())}
        for name, results in arms.items()
    }
    figures["base_test_loss"] = round(mean_loss(base_rows), 5)
    lora_rate, lora_rows, lora_lead = bests["all"]
    full_rate, full_rows, full_lead = bests["full"]
    ratio = lora_rate / full_rate
    leads = ", ".join(
        f"{name} best beats its runner-up by {fmt(lead[0], lead[1])}"
        for name, (_, _, lead) in (("LoRA", bests["all"]), ("full", bests["full"]))
        if lead is not None
    )
    clear_rates = all(lead is not None and lead[0] > NOISE_SE * lead[1] for lead in (lora_lead, full_lead))
    rows.append(
        (
            "LoRA's best learning rate is above full fine-tuning's",
            "math: 1e-4 vs 1e-5 (10x); code 2e-4 vs 5e-5 (4x); LoRA Without Regret: about 10x",
            f"LoRA (all, r 16) {lora_rate:.3g} vs full {full_rate:.3g}: {ratio:.3g}x, on a 3x-spaced sweep ({leads})",
            verdict(ratio > 1, clear_rates),
        )
    )
    losses = {name: mean_loss(best[1]) for name, best in bests.items()}
    all_mlp = paired_difference(bests["all"][1], bests["mlp"][1])
    mlp_attention = paired_difference(bests["mlp"][1], bests["attention"][1])
    order_holds = all_mlp[0] < 0 and mlp_attention[0] < 0
    order_clear = all_mlp[0] < -NOISE_SE * all_mlp[1] and mlp_attention[0] < -NOISE_SE * mlp_attention[1]
    rows.append(
        (
            "all linear layers > MLP > attention (each at its best rate)",
            "GSM8K/HumanEval: all > mlp > attention at every rank",
            f"test loss all {losses['all']:.4f}, mlp {losses['mlp']:.4f}, attention {losses['attention']:.4f}; "
            f"all - mlp {fmt(all_mlp[0], all_mlp[1], '+')}, "
            f"mlp - attention {fmt(mlp_attention[0], mlp_attention[1], '+')}",
            verdict(order_holds, order_clear),
        )
    )
    learns = paired_difference(full_rows, lora_rows)
    rows.append(
        (
            "full fine-tuning learns more (short trials, held-out GSM8K test loss)",
            "full > LoRA on GSM8K and HumanEval at every budget",
            f"full {losses['full']:.4f} vs LoRA {losses['all']:.4f} (base {mean_loss(base_rows):.4f}): "
            f"full - LoRA {fmt(learns[0], learns[1], '+')} over {len(full_rows)} rows",
            verdict(learns[0] < 0, learns[0] < -NOISE_SE * learns[1]),
        )
    )
    figures["rates"] = {"lora": lora_rate, "full": full_rate, "ratio": ratio}
    del measurer  # the full runs load their own model

    # 2. The full runs, scored with the base model on the same items.
    common = ["--task", "math", "--model", args.model, "--train-examples", str(args.train_examples)]
    common += ["--epochs", str(args.epochs), "--batch-size", str(BATCH), "--seq-len", str(SEQ_LEN)]
    common += ["--eval-limit", str(args.eval_limit)]
    if args.data_dir:
        common += ["--data-dir", str(args.data_dir)]
    lora_args = ["--rank", "16", "--alpha", "32", "--targets", "all", "--learning-rate", f"{lora_rate:g}"]
    lora_run = advisor("train", *common, *lora_args, "--out", str(args.out / "lora"))
    full_args = ["--method", "full", "--learning-rate", f"{full_rate:g}"]
    full_run = advisor("train", *common, *full_args, "--out", str(args.out / "full"))
    figures["runs"] = {"lora": _run_figures(lora_run), "full": _run_figures(full_run)}
    lora_noise, full_noise = lora_run.get("change_noise") or {}, full_run.get("change_noise") or {}
    if "learning" in lora_noise and "learning" in full_noise:
        lora_learn, full_learn = lora_noise["learning"], full_noise["learning"]
        rows.append(
            (
                f"full fine-tuning learns more ({args.epochs} epochs of {args.train_examples} examples, GSM8K)",
                "GSM8K after 4 epochs of MetaMathQA: full 0.642 vs LoRA r 256 0.621, r 16 0.584",
                f"GSM8K change vs base: full {fmt(full_learn['change'], full_learn['change_stderr'], '+')}, "
                f"LoRA {fmt(lora_learn['change'], lora_learn['change_stderr'], '+')} ({args.eval_limit} items, paired)",
                _learning_verdict(full_learn, lora_learn),
            )
        )
    if "general" in lora_noise and "general" in full_noise:
        lora_gen, full_gen = lora_noise["general"], full_noise["general"]
        forgets = lora_gen["change"] > full_gen["change"]
        clear = abs(lora_gen["change"] - full_gen["change"]) > NOISE_SE * math.hypot(
            lora_gen["change_stderr"] or 0, full_gen["change_stderr"] or 0
        )
        rows.append(
            (
                "LoRA forgets less (general mean of HellaSwag, WinoGrande, ARC-Challenge)",
                "LoRA forgets less than full fine-tuning at matched learning; forgetting grows with training",
                f"general change vs base: LoRA {fmt(lora_gen['change'], lora_gen['change_stderr'], '+')}, full "
                f"{fmt(full_gen['change'], full_gen['change_stderr'], '+')} ({args.eval_limit} items each, paired)",
                verdict(forgets, clear)
                if lora_gen["within_noise"] is False or full_gen["within_noise"] is False
                else "not testable at this scale (neither forgot beyond noise)",
            )
        )

    # 3. The weight changes' spectra.
    spectra = {}
    for name in ("lora", "full"):
        report = advisor("spectrum", "--model", args.model, "--full-run", str(args.out / name))
        spectra[name] = report
    figures["spectrum"] = {name: _spectrum_figures(report) for name, report in spectra.items()}
    full_median = figures["spectrum"]["full"]["median_rank_90"]
    lora_median = figures["spectrum"]["lora"]["median_rank_90"]
    full_rank = figures["spectrum"]["full"]["median_full_rank"]
    testable = full_rank is not None and full_rank >= 160
    rows.append(
        (
            "full fine-tuning's weight change is far from low-rank",
            "rank for 90 % of ΔW's variance: 10-100x a typical LoRA rank (close to full rank)",
            f"median rank_90: full {full_median} of {full_rank} possible ({(full_median or 0) / 16:.1f}x r 16); "
            f"LoRA r 16: {lora_median}",
            verdict((full_median or 0) >= 10 * 16) if testable else "not testable at this scale (matrices too small)",
        )
    )

    # 4. Generation diversity.
    if args.samples > 0:
        tuned = ["--adapter", str(args.out / "lora" / "adapter"), "--tuned", str(args.out / "full" / "model")]
        diversity = advisor(
            "eval",
            "--model",
            args.model,
            *(["--data-dir", str(args.data_dir)] if args.data_dir else []),
            "--tasks",
            "gsm8k",
            "--samples",
            str(args.samples),
            "--temperature",
            "0.8",
            "--limit",
            str(args.sample_problems),
            *tuned,
        )
        figures["diversity"] = diversity
        rows.append(_diversity_row(diversity, args))

    rows.append(
        (
            "what this scale cannot show",
            "7B models, 20B tokens of continued pretraining or 100k+ instruction examples",
            f"135M parameters, {args.train_examples} examples x {args.epochs} epochs, {args.eval_limit} items per "
            "benchmark: only changes above about 2 standard errors are findings",
            "-",
        )
    )
    figures["minutes"] = round((time.perf_counter() - started) / 60, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**figures, "table": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"\n{args.model} on {figures['runtime']}, {figures['minutes']} min; figures in {RESULTS}\n")
    print("| finding | the paper | ours (± standard error) | verdict |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _learning_verdict(full: dict[str, Any], lora: dict[str, Any]) -> str:
    if full["within_noise"] and lora["within_noise"]:
        return "not testable at this scale (neither learned beyond noise)"
    difference = full["change"] - lora["change"]
    error = math.hypot(full["change_stderr"] or 0, lora["change_stderr"] or 0)
    return verdict(difference > 0, difference > NOISE_SE * error)


def _run_figures(report: dict[str, Any]) -> dict[str, Any]:
    training = report.get("training", {})
    return {
        "learning_rate": report["settings"]["learning_rate"],
        "steps": training.get("steps"),
        "train_tokens": training.get("train_tokens"),
        "epoch_losses": training.get("epoch_losses"),
        "change_noise": report.get("change_noise"),
    }


def _spectrum_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The spectrum report's medians (its JSON: per matrix rank_90 and the matrix's full rank)."""
    matrices = [m for m in report.get("matrices", []) if m.get("rank_90", 0) > 0]
    ranks = sorted(m["rank_90"] for m in matrices)
    full = sorted(min(m["shape"]) for m in matrices)
    return {
        "median_rank_90": ranks[len(ranks) // 2] if ranks else None,
        "median_full_rank": full[len(full) // 2] if full else None,
        "by_type": report.get("median_rank_by_type"),
        "observations": report.get("observations"),
    }


def _diversity_row(report: dict[str, Any], args: argparse.Namespace) -> tuple[str, str, str, str]:
    """Distinct GSM8K solutions per problem for the base, LoRA and full fine-tuning; LoRA - full paired over the
    same problems."""
    columns = report["results"]["gsm8k"]
    means = {name: columns[name]["distinct_per_problem"] for name in ("base", "adapter", "tuned") if name in columns}
    text = ", ".join(
        f"{label} {fmt(means[name]['mean'], means[name]['stderr'])}"
        for name, label in (("base", "base"), ("adapter", "LoRA"), ("tuned", "full"))
        if name in means
    )
    lora, full = columns["adapter"]["distinct"], columns["tuned"]["distinct"]
    differences = [a - b for a, b in zip(lora, full, strict=True)]
    mean = sum(differences) / len(differences)
    spread = (
        math.sqrt(sum((d - mean) ** 2 for d in differences) / (len(differences) - 1) / len(differences))
        if len(differences) > 1
        else float("nan")
    )
    k = columns["base"]["samples_per_problem"]
    text += f" of {k} samples per problem, {len(lora)} problems; LoRA - full {fmt(mean, spread, '+')} (paired)"
    ceiling = all(value == k for name in ("adapter", "tuned") for value in columns[name]["distinct"])
    if ceiling:
        return (
            "LoRA keeps generations more diverse",
            "full fine-tuning's solutions collapse to fewer distinct ones than LoRA's (HumanEval, pass@k)",
            text,
            "not testable at this scale (every sample distinct for both)",
        )
    return (
        "LoRA keeps generations more diverse",
        "full fine-tuning's solutions collapse to fewer distinct ones than LoRA's (HumanEval, pass@k)",
        text,
        verdict(mean > 0, mean > NOISE_SE * spread),
    )


if __name__ == "__main__":
    main()
