"""Training throughput of the trial runner against what a user would run instead, and against the machine.

Three trainers train the same LoRA adapters (r=16, alpha=32, all linear layers) on the same already-loaded model
weights, the same task data, batch size, row length and number of optimizer steps, alternately, after one
uncounted warm-up each:
- ours: the trial runner on packed rows;
- Trainer: transformers' Trainer + PEFT on dynamically padded batches (the plain recipe);
- TRL: TRL's SFTTrainer with packing (packing_strategy="bfd", padding_free=True), in TRL's own environment
  (bench/trl_anchor.py; a new process per run, so its model load is outside the timing).
Throughput is real tokens trained per second of optimizer steps (forward, backward, clipping, optimizer; data
loading left out); padding does not count.

Against the machine: the float32 (or the runtime's dtype) matmul rate on the model's own MLP shape,
rows x hidden @ hidden x intermediate, measured at the start of every round (a shared machine's rate drifts by a
quarter within minutes), and each trainer's model-FLOP utilisation against the rounds' mean rate:
tokens/s x FLOPs per token / that rate. FLOPs per token are counted the usual way (PaLM's model FLOPs) for LoRA,
whose frozen weights need no weight gradient: 4 x parameters (forward 2, input gradient 2) plus attention,
12 x layers x attention width x row length. Work a trainer skips (logits at prompt positions, attention across
examples) still counts, as it does for every trainer alike.

The project's targets: ours >= 1.7x the Trainer and >= 2x TRL on code and on math, and >= 70 % utilisation.

    python bench/trial_throughput.py                                   # code and math, the built-in SmolLM2-135M
    python bench/trial_throughput.py --tasks math --anchors Trainer --steps 4
    python bench/trial_throughput.py --tasks math --row-lengths 256,512,1024   # ours at each row length, the
                                                                               # same tokens per step
    python bench/trial_throughput.py --model /tmp/tinybench --seq-len 128 --steps 4
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.data.encode import Example, task_examples
from tuner.data.load import resolve_data_dir
from tuner.data.packing import IGNORE_INDEX
from tuner.data.prepare import StudyData, pack_study_data
from tuner.models.load import DEFAULT_MODEL, load_model, load_tokenizer, loadable_location, resolve_model
from tuner.settings import DataSettings, LoraSettings, TrainBudget
from tuner.training.runtime import Runtime, allocator, pick_runtime, quiet_libraries, restart_with_jemalloc
from tuner.training.trial import peft_config, run_trial

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LORA = LoraSettings(rank=16, alpha=32, targets="all")
TARGETS = {"Trainer": 1.7, "TRL": 2.0}
"""ours / anchor targets."""
TARGET_UTILISATION = 0.70
COMPILED = "compiled"
"""The anchor that is ours with the decoder layers compiled (tuner.training.compilation), on a cold inductor cache."""
WARMUP_STEPS = 2
"""Steps each side trains once, uncounted, before the measured rounds (kernel choice, allocator, caches)."""
SEED = 0


@dataclass(frozen=True)
class Measurement:
    """What one run trained and how long its optimizer steps took."""

    tokens: int
    """Real (non-padding) tokens trained."""
    batch_tokens: int
    """Tokens in the batches, padding included."""
    seconds: float
    """Seconds inside optimizer steps."""

    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def padding_share(self) -> float:
        return 1 - self.tokens / self.batch_tokens if self.batch_tokens else 0.0

    def __add__(self, other: Measurement) -> Measurement:
        return Measurement(
            self.tokens + other.tokens, self.batch_tokens + other.batch_tokens, self.seconds + other.seconds
        )


def default_data_dir() -> str | None:
    """ADVISOR_DATA_DIR if set, else ../shared/data beside the repository if it is there (else the hub)."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return os.environ.get("ADVISOR_DATA_DIR") or (str(shared) if shared.is_dir() else None)


def trainer_examples(examples: list[Example], data: StudyData, seq_len: int) -> datasets.Dataset:
    """The runner's training examples unpacked: the examples after its held-out ones, each cut to seq_len."""
    import datasets

    train = examples[data.heldout_examples :]
    return datasets.Dataset.from_dict(
        {"input_ids": [i[:seq_len] for i, _ in train], "labels": [lab[:seq_len] for _, lab in train]}
    )


def measure_ours(
    model: PreTrainedModel,
    data: StudyData,
    budget: TrainBudget,
    learning_rate: float,
    runtime: Runtime,
    compile_mode: str = "off",
) -> Measurement:
    """One run of the project's trial runner, with its own step timing and token count (eager, or with its decoder
    layers compiled from the first step: compile_mode "on")."""
    # An infinite starting loss: the divergence guard never stops a throughput run early.
    result = run_trial(
        model, data, LORA, learning_rate, budget, runtime, start_loss=math.inf, seed=SEED, compile_mode=compile_mode
    )
    return Measurement(result.train_tokens, result.train_tokens, result.train_seconds)


def measure_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: datasets.Dataset,
    budget: TrainBudget,
    learning_rate: float,
    runtime: Runtime,
) -> Measurement:
    """One Trainer + PEFT run of budget.steps() optimizer steps on dynamically padded batches."""
    import torch
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    sync: Callable[[], None] = torch.cuda.synchronize if runtime.is_cuda else (lambda: None)
    pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
    collated: deque[tuple[int, int]] = deque()  # (real, padded) tokens per batch, in training order

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad(features)
        collated.append((int(batch["attention_mask"].sum()), batch["input_ids"].numel()))
        return batch

    class StepTimer(TrainerCallback):
        """Times each optimizer step and takes the token counts of the batch it trained."""

        def __init__(self) -> None:
            self.measured = Measurement(0, 0, 0.0)
            self.started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            seconds = time.perf_counter() - self.started
            # The dataloader may collate a batch ahead; the oldest counts are this step's batch.
            real, padded = collated.popleft()
            self.measured += Measurement(real, padded, seconds)

    torch.manual_seed(SEED)
    peft_model = get_peft_model(model, peft_config(LORA))
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=budget.batch_size,
            max_steps=budget.steps(),
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=budget.warmup_ratio,  # a float below 1 is a share of the steps
            max_grad_norm=budget.max_grad_norm,
            weight_decay=0.0,
            bf16=runtime.is_cuda and runtime.dtype == torch.bfloat16,
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            remove_unused_columns=False,
            dataloader_pin_memory=runtime.is_cuda,  # the default where it applies; silences a warning on CPU
            disable_tqdm=True,
            seed=SEED,
        )
        trainer = Trainer(
            model=peft_model, args=arguments, train_dataset=examples, data_collator=collate, callbacks=[timer]
        )
        trainer.remove_callback(PrinterCallback)  # no metrics dict printed after each run
        try:
            trainer.train()
        finally:
            peft_model.unload()  # the base model is left as it was, for the next run
            del trainer, peft_model
            gc.collect()
            if runtime.is_cuda:
                torch.cuda.empty_cache()
    return timer.measured


def matmul_rate(config: Any, runtime: Runtime, rows: int, repeats: int = 10) -> float:
    """FLOP/s of one matmul of the model's MLP shape (rows x hidden @ hidden x intermediate) in the runtime's dtype
    on its device: the machine's peak for this model, measured."""
    import torch

    hidden, intermediate = config.hidden_size, config.intermediate_size
    left = torch.randn(rows, hidden, device=runtime.device, dtype=runtime.dtype)
    right = torch.randn(hidden, intermediate, device=runtime.device, dtype=runtime.dtype)
    sync: Callable[[], None] = torch.cuda.synchronize if runtime.is_cuda else (lambda: None)
    best = math.inf
    for _ in range(3):  # the best of three timings of `repeats` products each
        torch.mm(left, right)
        sync()
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(left, right)
        sync()
        best = min(best, (time.perf_counter() - started) / repeats)
    return 2 * rows * hidden * intermediate / best


def flops_per_token(model: PreTrainedModel, seq_len: int) -> float:
    """Model FLOPs per trained token for LoRA: 4 x parameters (forward, input gradient; frozen weights need no
    weight gradient) plus attention, 12 x layers x attention width x row length (PaLM's count)."""
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    width = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    return 4 * parameters + 12 * config.num_hidden_layers * width * seq_len


def trl_spec(
    source_dir: str, examples: datasets.Dataset, budget: TrainBudget, learning_rate: float, steps: int
) -> dict[str, Any]:
    """What bench/trl_anchor.py trains: the Trainer's examples, our LoRA, budget and schedule."""
    import torch

    config = peft_config(LORA)
    return {
        "model_dir": source_dir,
        "examples": [[ids, labels] for ids, labels in zip(examples["input_ids"], examples["labels"], strict=True)],
        "batch_size": budget.batch_size,
        "seq_len": budget.seq_len,
        "steps": steps,
        "warmup_steps": WARMUP_STEPS,
        "learning_rate": learning_rate,
        "warmup_ratio": budget.warmup_ratio,
        "max_grad_norm": budget.max_grad_norm,
        "lora": {
            "r": config.r,
            "lora_alpha": config.lora_alpha,
            "lora_dropout": config.lora_dropout,
            "target_modules": config.target_modules
            if isinstance(config.target_modules, str)
            else sorted(config.target_modules),
        },
        "threads": torch.get_num_threads(),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, model directory, .gguf file or hub id")
    parser.add_argument("--tasks", default="code,math", help="comma-separated, of code and math (default: both)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="local data mirror (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per measured run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--rounds", type=int, default=2, help="measured runs of each, alternating")
    parser.add_argument(
        "--anchors",
        default="Trainer,TRL",
        help="what ours is measured against: Trainer, TRL, compiled (ours with torch.compile), several or none",
    )
    parser.add_argument(
        "--row-lengths",
        default=None,
        help="comma-separated row lengths: ours alone at each, batch-size x seq-len tokens a step (no anchors)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    args.tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    args.anchors = [name.strip() for name in args.anchors.split(",") if name.strip() and name.strip() != "none"]
    if any(name not in (*TARGETS, COMPILED) for name in args.anchors):
        parser.error(f"--anchors takes {', '.join((*TARGETS, COMPILED))} or none, got {','.join(args.anchors)}")
    if not args.tasks or any(task not in ("code", "math") for task in args.tasks):
        parser.error(f"--tasks takes code and/or math, got {','.join(args.tasks) or 'nothing'}")
    if args.row_lengths is not None:
        step_tokens = args.batch_size * args.seq_len
        try:
            args.row_lengths = [int(length) for length in args.row_lengths.split(",")]
        except ValueError:
            parser.error(f"--row-lengths takes whole numbers, got {args.row_lengths}")
        if any(length < 1 or step_tokens % length for length in args.row_lengths):
            parser.error(f"each of --row-lengths must divide batch-size x seq-len ({step_tokens} tokens a step)")
    return args


def main() -> None:
    args = parse_args()
    # The allocator `advisor` runs under (it restarts itself with jemalloc where installed), for every trainer
    # alike: TRL's process inherits it.
    restart_with_jemalloc(sys.argv)
    # The GGUF reader's progress bar (first use of the built-in model) is tqdm's own, out of transformers' reach.
    os.environ.setdefault("TQDM_DISABLE", "1")
    quiet_libraries()
    if COMPILED in args.anchors:  # a cold cache: the first compiled run pays the whole warm-up, as a first use does
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")
    from trl_anchor import measure_trl, trl_python

    # Set up: the model, the machine's matmul rate, TRL's environment.
    runtime = pick_runtime()
    budget = TrainBudget(
        train_tokens=args.steps * args.batch_size * args.seq_len,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        evaluations=1,  # the runner's evaluation is not timed; one, on one row, keeps the wall time down
        eval_rows=1,
        confirm_rows=0,  # the trials run side by side are never re-measured
    )
    warmup_budget = dataclasses.replace(budget, train_tokens=WARMUP_STEPS * budget.tokens_per_step())
    data_dir = resolve_data_dir(args.data_dir)
    source = resolve_model(args.model)
    tokenizer = load_tokenizer(source)
    model = load_model(source, runtime.device, runtime.dtype)

    if args.row_lengths:
        figures = {task: sweep_row_lengths(args, task, model, tokenizer, data_dir, runtime) for task in args.tasks}
        if args.json:
            print(json.dumps({"device": runtime.describe(), "model": source.describe(), "row_lengths": figures}))
        return

    def probe_peak() -> float:
        return matmul_rate(model.config, runtime, args.batch_size * args.seq_len)

    peak = probe_peak()
    per_token = flops_per_token(model, args.seq_len)
    trl = trl_python() if "TRL" in args.anchors else None
    print(f"device: {runtime.describe()}; allocator: {allocator()}")
    print(f"model: {source.describe()}")
    print(
        f"matmul {args.batch_size * args.seq_len} x {model.config.hidden_size} @ {model.config.hidden_size} x "
        f"{model.config.intermediate_size}: {peak / 1e9:,.1f} GFLOP/s at the start; {per_token / 1e9:.3f} GFLOP per "
        "token"
    )
    print(
        f"batch {args.batch_size} x {args.seq_len}, {args.steps} steps x {args.rounds} rounds; "
        f"LoRA r={LORA.rank} alpha={LORA.alpha:g} all-linear"
    )

    figures: dict[str, dict[str, Any]] = {}
    for task in args.tasks:
        data_settings = DataSettings(task, seed=SEED)
        encoded = task_examples(data_settings, budget.seq_len, tokenizer, data_dir)
        data = pack_study_data(data_settings, encoded, budget.packing(), tokenizer, data_dir)
        examples = trainer_examples(encoded, data, budget.seq_len)
        print(f"task {task}: {len(data.train)} packed rows; {len(examples)} examples for the Trainer and TRL")
        runs: dict[str, Callable[[TrainBudget], Measurement]] = {
            "ours": functools.partial(measure_ours, model, data, learning_rate=args.learning_rate, runtime=runtime)
        }
        if "Trainer" in args.anchors:
            runs["Trainer"] = functools.partial(
                measure_trainer, model, tokenizer, examples, learning_rate=args.learning_rate, runtime=runtime
            )
        if trl is not None:
            spec = trl_spec(loadable_location(source), examples, budget, args.learning_rate, args.steps)

            def run_trl(b: TrainBudget, spec: dict[str, Any] = spec) -> Measurement:
                if b is warmup_budget:  # TRL warms up in its own process, before each measured run
                    return Measurement(0, 0, 0.0)
                measured = measure_trl(trl, spec)
                return Measurement(measured["tokens"], measured["batch_tokens"], measured["seconds"])

            runs["TRL"] = run_trl
        if COMPILED in args.anchors:
            runs[COMPILED] = functools.partial(runs["ours"], compile_mode="on")

        peaks: list[float] = []
        warmups, rounds = alternate(
            runs,
            dict.fromkeys(runs, warmup_budget),
            dict.fromkeys(runs, budget),
            args.rounds,
            str,
            before_round=lambda peaks=peaks: peaks.append(probe_peak()),
        )
        figures[task] = report(task, rounds, peaks, per_token)
        if COMPILED in runs:
            figures[task][COMPILED] |= compile_cost(warmups, rounds, budget)

    if args.json:
        print(
            json.dumps(
                {
                    "device": runtime.describe(),
                    "model": source.describe(),
                    "peak_flops_at_start": peak,
                    "flops_per_token": per_token,
                    "steps": args.steps,
                    "rounds": args.rounds,
                    "batch_size": args.batch_size,
                    "seq_len": args.seq_len,
                    "tasks": figures,
                }
            )
        )


def alternate(
    runs: dict[Any, Callable[[TrainBudget], Measurement]],
    warmup_budgets: dict[Any, TrainBudget],
    budgets: dict[Any, TrainBudget],
    rounds: int,
    label: Callable[[Any], str],
    before_round: Callable[[], None] = lambda: None,
) -> tuple[dict[Any, Measurement], dict[Any, list[Measurement]]]:
    """Each run warmed up once on its warm-up budget (uncounted), then all measured alternately for `rounds`, each
    round printed (`before_round` called at its start); returns the warm-ups' measurements and each round's, per
    run."""
    warmups = {key: run(warmup_budgets[key]) for key, run in runs.items()}
    measured: dict[Any, list[Measurement]] = {key: [] for key in runs}
    for round_number in range(1, rounds + 1):
        before_round()
        line = []
        for key, run in runs.items():
            measured[key].append(run(budgets[key]))
            line.append(f"{label(key)} {measured[key][-1].tokens_per_second():,.0f}")
        print(f"  round {round_number}: " + ", ".join(line) + " tokens/s")
    return warmups, measured


def total(measurements: list[Measurement]) -> Measurement:
    """The rounds' measurements summed."""
    return sum(measurements, Measurement(0, 0, 0.0))


def paired_ratio(ours: list[Measurement], anchor: list[Measurement]) -> tuple[float, float]:
    """Ours over the anchor on the rounds' totals, and its standard error from the rounds' own ratios (each round
    runs both side by side, so a round's ratio is a paired measurement). The error covers the drift within one
    run, not the larger one between runs on a shared machine. NaN with fewer than two rounds."""
    ratio = total(ours).tokens_per_second() / total(anchor).tokens_per_second()
    per_round = [a.tokens_per_second() / b.tokens_per_second() for a, b in zip(ours, anchor, strict=True)]
    if len(per_round) < 2:
        return ratio, math.nan
    mean = sum(per_round) / len(per_round)
    variance = sum((r - mean) ** 2 for r in per_round) / (len(per_round) - 1)
    return ratio, math.sqrt(variance / len(per_round))


def sweep_row_lengths(
    args: argparse.Namespace,
    task: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: Path | None,
    runtime: Runtime,
) -> dict[str, float]:
    """Ours at each row length with the same tokens a step (batch = batch-size x seq-len / length), alternating
    over the rounds after a warm-up each; prints real tokens/s per length against the fastest, returns them."""
    step_tokens = args.batch_size * args.seq_len
    runs: dict[int, Callable[[TrainBudget], Measurement]] = {}
    budgets: dict[int, TrainBudget] = {}
    rows_per_length = {}
    for length in args.row_lengths:
        budget = TrainBudget(
            train_tokens=args.steps * step_tokens,
            batch_size=step_tokens // length,
            seq_len=length,
            evaluations=1,
            eval_rows=1,
            confirm_rows=0,
        )
        data_settings = DataSettings(task, seed=SEED)
        encoded = task_examples(data_settings, length, tokenizer, data_dir)
        data = pack_study_data(data_settings, encoded, budget.packing(), tokenizer, data_dir)
        rows_per_length[length] = len(data.train)
        budgets[length] = budget
        runs[length] = functools.partial(measure_ours, model, data, learning_rate=args.learning_rate, runtime=runtime)
    print(
        f"task {task}: {step_tokens} tokens a step; packed rows "
        + ", ".join(f"{length}: {rows}" for length, rows in rows_per_length.items())
    )
    warmups = {length: dataclasses.replace(b, train_tokens=WARMUP_STEPS * step_tokens) for length, b in budgets.items()}
    _, rounds = alternate(
        runs, warmups, budgets, args.rounds, lambda length: f"{budgets[length].batch_size} x {length}:"
    )
    rates = {length: total(measured).tokens_per_second() for length, measured in rounds.items()}
    fastest = max(rates.values())
    for length, rate in rates.items():
        print(f"  {budgets[length].batch_size} x {length}: {rate:,.0f} tokens/s ({rate / fastest:.2f}x the fastest)")
    return {str(length): round(rate, 1) for length, rate in rates.items()}


def compile_cost(
    warmups: dict[str, Measurement], rounds: dict[str, list[Measurement]], budget: TrainBudget
) -> dict[str, float]:
    """Prints what compiling costs once (the compiled warm-up run's extra seconds over the eager one's, on a cold
    cache) and saves per step, and the eager training time from which it repays; returns the figures."""
    warmup = warmups[COMPILED].seconds - warmups["ours"].seconds
    eager, compiled = total(rounds["ours"]), total(rounds[COMPILED])
    eager_step = eager.seconds / (eager.tokens / budget.tokens_per_step())
    compiled_step = compiled.seconds / (compiled.tokens / budget.tokens_per_step())
    saving = 1 - compiled_step / eager_step
    break_even = warmup / saving if saving > 0 else math.inf
    print(
        f"  compiling: {warmup:.1f} s warm-up (cold cache), steps {eager_step:.2f} s eager -> {compiled_step:.2f} s "
        f"compiled ({saving:.1%} saved); repays after {break_even:,.0f} s of eager training "
        f"({break_even / eager_step:,.0f} steps)"
    )
    return {
        "warmup_seconds": round(warmup, 1),
        "eager_step_seconds": round(eager_step, 3),
        "compiled_step_seconds": round(compiled_step, 3),
        "step_saving": round(saving, 4),
    }


def report(task: str, rounds: dict[str, list[Measurement]], peaks: list[float], per_token: float) -> dict[str, Any]:
    """Prints one task's table: tokens/s, padding and utilisation (against the mean of the matmul rates measured at
    the rounds' starts) per trainer, ours over each anchor (with its standard error over the rounds) against the
    targets; returns the figures."""
    peak = sum(peaks) / len(peaks)
    print(
        f"  matmul rate at the rounds' starts: {peak / 1e9:,.1f} GFLOP/s on average "
        f"({min(peaks) / 1e9:,.1f}-{max(peaks) / 1e9:,.1f})"
    )
    figures: dict[str, Any] = {"peak_flops": round(peak), "peak_flops_range": [round(min(peaks)), round(max(peaks))]}
    for name, measurements in rounds.items():
        measured = total(measurements)
        rate = measured.tokens_per_second()
        utilisation = rate * per_token / peak
        figures[name] = {
            "tokens_per_second": round(rate, 1),
            "padding_share": round(measured.padding_share(), 3),
            "utilisation": round(utilisation, 3),
        }
        print(
            f"  {name + ':':<9}{rate:>8,.0f} tokens/s ({measured.tokens:,} real tokens in {measured.seconds:.1f} s, "
            f"{measured.padding_share():.0%} padding), {utilisation:.0%} of the matmul peak"
        )
    for name, target in TARGETS.items():
        if name in rounds:
            ratio, error = paired_ratio(rounds["ours"], rounds[name])
            figures[f"ours_over_{name}"] = round(ratio, 3)
            figures[f"ours_over_{name}_se"] = round(error, 3) if math.isfinite(error) else None
            spread = f" ± {error:.2f} (SE over {len(rounds[name])} rounds)" if math.isfinite(error) else ""
            verdict = "met" if ratio >= target else "NOT met"
            if math.isfinite(error) and abs(ratio - target) < 2 * error:
                verdict += ", within 2 SE of it"
            print(f"  ours / {name}: {ratio:.2f}x{spread} (target >= {target:g}x: {verdict})")
    met = figures["ours"]["utilisation"] >= TARGET_UTILISATION
    print(
        f"  ours' utilisation: {figures['ours']['utilisation']:.0%} (target >= {TARGET_UTILISATION:.0%}: "
        f"{'met' if met else 'NOT met'})"
    )
    return figures


if __name__ == "__main__":
    main()
