"""Training throughput of the trial runner against a plain Hugging Face Trainer + PEFT run.

Both train the same LoRA adapters (r=16, alpha=32, all linear layers) on the same already-loaded
model, the same task data, batch size, sequence length and number of optimizer steps, alternately
in one process after one uncounted warm-up run each. Throughput is real tokens trained per second
of training steps: every token of the runner's packed rows is real; for the Trainer only the
attention_mask == 1 tokens of its dynamically padded batches count. Both time forward, backward,
clipping and the optimizer step, and leave data loading out. The project's target is
ours / Trainer >= 1.3x.

    python bench/trial_throughput.py                                   # the built-in SmolLM2-135M
    python bench/trial_throughput.py --model /tmp/tinybench --seq-len 128 --steps 4
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.data import Example, StudyData, pack_study_data, resolve_data_dir, task_examples
from tuner.models import DEFAULT_MODEL, load_model, load_tokenizer, resolve_model
from tuner.packing import IGNORE_INDEX
from tuner.runtime import Runtime, pick_runtime
from tuner.settings import DataSettings, LoraSettings, TrainBudget
from tuner.trial import peft_config, run_trial

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LORA = LoraSettings(rank=16, alpha=32, targets="all")
TARGET_RATIO = 1.3
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
    model: PreTrainedModel, data: StudyData, budget: TrainBudget, learning_rate: float, runtime: Runtime
) -> Measurement:
    """One run of the project's trial runner, with its own step timing and token count."""
    # An infinite starting loss: the divergence guard never stops a throughput run early.
    result = run_trial(model, data, LORA, learning_rate, budget, runtime, start_loss=math.inf, seed=SEED)
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, model directory, .gguf file or hub id")
    parser.add_argument("--task", default="code", choices=("code", "math"))
    parser.add_argument("--data-dir", default=default_data_dir(), help="local data mirror (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per measured run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--rounds", type=int, default=2, help="measured runs of each, alternating ours and Trainer")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    # The GGUF reader's progress bar (first use of the built-in model) is tqdm's own, out of transformers' reach.
    os.environ.setdefault("TQDM_DISABLE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # peft 0.21 reads a property transformers 5 deprecates; harmless, and it would interleave with the figures.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    # Set up: model, data for both sides.
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
    data_settings = DataSettings(args.task, seed=SEED)
    data_dir = resolve_data_dir(args.data_dir)
    source = resolve_model(args.model)
    tokenizer = load_tokenizer(source)
    model = load_model(source, runtime.device, runtime.dtype)
    encoded = task_examples(data_settings, budget.seq_len, tokenizer, data_dir)
    data = pack_study_data(data_settings, encoded, budget.packing(), tokenizer, data_dir)
    examples = trainer_examples(encoded, data, budget.seq_len)
    print(f"device: {runtime.describe()}")
    print(f"model: {source.describe()}")
    print(
        f"task {args.task}: {len(data.train)} packed rows of {args.seq_len} tokens; {len(examples)} examples for "
        f"Trainer; batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds; "
        f"LoRA r={LORA.rank} alpha={LORA.alpha:g} all-linear"
    )

    # Warm up both once, uncounted, then measure them alternately.
    measure_ours(model, data, warmup_budget, args.learning_rate, runtime)
    measure_trainer(model, tokenizer, examples, warmup_budget, args.learning_rate, runtime)
    ours = trainer = Measurement(0, 0, 0.0)
    for round_number in range(1, args.rounds + 1):
        ours_round = measure_ours(model, data, budget, args.learning_rate, runtime)
        trainer_round = measure_trainer(model, tokenizer, examples, budget, args.learning_rate, runtime)
        print(
            f"round {round_number}: ours {ours_round.tokens_per_second():,.0f} tokens/s, "
            f"Trainer {trainer_round.tokens_per_second():,.0f} tokens/s"
        )
        ours, trainer = ours + ours_round, trainer + trainer_round

    # Report: all measured rounds together.
    ratio = ours.tokens_per_second() / trainer.tokens_per_second()
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"ours (packed rows):        {ours.tokens_per_second():>10,.0f} tokens/s  "
        f"({ours.tokens:,} tokens in {ours.seconds:.2f} s)"
    )
    print(
        f"Trainer (padded batches):  {trainer.tokens_per_second():>10,.0f} tokens/s  "
        f"({trainer.tokens:,} real tokens in {trainer.seconds:.2f} s; "
        f"{trainer.padding_share():.0%} of batch tokens padding)"
    )
    print(f"ours / Trainer:            {ratio:>10.2f}x  (target >= {TARGET_RATIO:g}x: {verdict})")
    if args.json:
        figures = {
            "device": runtime.describe(),
            "model": source.describe(),
            "task": args.task,
            "steps": args.steps,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "ours_tokens_per_second": round(ours.tokens_per_second(), 1),
            "trainer_tokens_per_second": round(trainer.tokens_per_second(), 1),
            "ratio": round(ratio, 3),
            "trainer_padding_share": round(trainer.padding_share(), 3),
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
