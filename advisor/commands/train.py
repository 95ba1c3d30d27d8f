"""`advisor train`: the recommended full run, from a finished study, a preset, or settings given here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.arguments import ModelArgs, positive, positive_number, rate, size
from advisor.flags import option
from tuner.defaults import DATA_FORMATS, DEFAULT_EPOCHS, MAX_BATCH_SIZE, MAX_SEQ_LEN, REGIMES, TASKS
from tuner.errors import AdvisorError
from tuner.fullrun.handover import Overrides
from tuner.models.load import DEFAULT_MODEL
from tuner.paper import MIN_IFT_EPOCHS

if TYPE_CHECKING:
    from tuner.settings import RunSettings, StudySettings


@dataclass(frozen=True, kw_only=True)
class TrainArgs(ModelArgs):
    """`advisor train`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py)."""

    model: str | None = option(None, shown_default=DEFAULT_MODEL)  # the study's or preset's, else the built-in default
    from_run: Path | None = option(None, name="--from", metavar="RUN_DIR", one_of="start")
    """a finished study's run directory"""
    preset: str | None = option(None, metavar="NAME_OR_PATH", one_of="start")
    """a shipped preset's name or a file"""
    task: str | None = option(None, choices=TASKS)
    """what to learn"""
    out: Path | None = option(None, shown_default="RUN_DIR/train")
    """where the run goes"""
    epochs: int | None = option(None, parse=positive, shown_default=DEFAULT_EPOCHS)
    """passes over the data"""
    learning_rate: float | None = option(None, parse=rate)
    """peak learning rate"""
    rank: int | None = option(None, parse=positive)
    """LoRA rank"""
    alpha: float | None = option(None, parse=positive_number, shown_default="2 x rank")
    """LoRA alpha"""
    targets: str | None = option(None, choices=("attention", "mlp", "all"))
    """LoRA target modules"""
    method: str | None = option(None, choices=("lora", "full"), shown_default="lora")
    """lora, or full fine-tuning of every weight, the paper's reference"""
    memory_budget: str | None = None
    """e.g. 24GiB: refuse a run whose estimated step exceeds it"""
    batch_size: int | None = option(None, parse=size(MAX_BATCH_SIZE))
    """rows per optimizer step"""
    seq_len: int | None = option(None, parse=size(MAX_SEQ_LEN))
    """tokens per packed row"""
    seed: int | None = option(None, shown_default="the study's, else 0")
    """seed"""
    train_examples: int | None = option(None, parse=positive)
    """train on the first N examples only"""
    data: str | None = None
    """custom task: JSONL/JSON/CSV/Parquet file or hub dataset id"""
    prompt_column: str | None = option(None, shown_default="prompt")
    """custom task: instruction column"""
    response_column: str | None = option(None, shown_default="response")
    """custom task: answer column"""
    format: str | None = option(None, choices=DATA_FORMATS, metavar="FORMAT", shown_default="the study's, else auto")
    """custom task: the data's format: auto, messages, sharegpt, alpaca, prompt-completion, columns or text (auto:
    found from its columns)"""
    regime: str | None = option(None, choices=REGIMES, shown_default="the study's, else cpt for plain text, else ift")
    """ift: loss on the responses; cpt: continued pretraining, loss on every token"""
    quantize: str | None = option(None, choices=("none", "nf4"), shown_default="the study's or preset's, else none")
    """nf4: QLoRA, the adapter trained on the base model's weights in 4-bit NF4 (bitsandbytes)"""
    gradient_checkpointing: bool = False
    """recompute each layer's activations in the backward pass: less memory, slower steps"""
    nproc: int = option(1, parse=positive)
    """processes training the run on this machine: one per GPU (DDP over NCCL), or CPU processes (gloo)"""
    nnodes: int = option(1, parse=positive)
    """machines training the run, each running this same command (torchrun's c10d rendezvous)"""
    rdzv_endpoint: str | None = option(None, metavar="HOST:PORT")
    """with --nnodes above 1: where the machines meet (a port on the first machine)"""
    save_steps: int = option(200, parse=positive)
    """steps between checkpoints"""
    merge: bool = False
    """also save the base model with the adapter merged in"""
    eval: bool = True
    """do not score the trained adapter"""
    eval_tasks: str | None = option(None, shown_default="forgetting + the task's")
    """benchmarks to score"""
    eval_limit: int | None = option(None, parse=positive, shown_default="all")
    """items per benchmark"""
    score_each_epoch: bool = False
    """also score the adapter after every epoch"""
    prompt_format: str = option("chat", choices=("chat", "plain"))
    """GSM8K/HumanEval prompts"""
    allow_code_execution: bool = False
    """score HumanEval, running generated code in a sandbox"""
    json: bool = False
    """print the report as JSON on stdout"""

    def overrides(self) -> Overrides:
        """The settings given here that change the starting point (None keeps the study's or preset's)."""
        return Overrides(**{field.name: getattr(self, field.name) for field in fields(Overrides)})


def train(args: TrainArgs, argv: Sequence[str] = ()) -> int:
    """Train the recommended configuration for real: LoRA instruction tuning for whole epochs (4 by default,
    the paper's minimum), checkpointed every --save-steps steps and at each epoch's end.

    Start from a finished study (--from RUN_DIR, trained into RUN_DIR/train), a preset (--preset NAME or
    file), or settings given here (--task ...). Options such as --epochs or --learning-rate change the
    starting point. If the run is killed, the same command resumes from the last checkpoint. The adapter
    is saved in PEFT format (and merged into the base model with --merge), then scored for learning and
    forgetting against the base model; report.md, report.json and learning_vs_forgetting.png are written
    beside it.

    --method full trains every weight instead (the paper's reference): the same data, schedule and
    clipping, at the starting point's LoRA rate / 10 (LoRA's best rate is about 10x full fine-tuning's)
    or the paper's full fine-tuning rate; the whole model is saved in OUT/model (from_pretrained).
    """
    from rich.console import Console

    from advisor.presets import explicit_preset, load_preset, preset_from_run, preset_run_settings
    from advisor.progress import TrainRichReporter
    from tuner.data.load import resolve_data_dir
    from tuner.fullrun.distributed import LAUNCHED, Launch, launch, peer_lost, ranks
    from tuner.fullrun.handover import scoring_settings
    from tuner.fullrun.train import RunOptions, train_run
    from tuner.models.limits import check_fits_model
    from tuner.rundir import check_out_dir
    from tuner.training.compilation import compile_mode

    compile_mode()  # a bad ADVISOR_COMPILE is said before anything loads
    overrides = args.overrides()
    if (args.from_run is not None) + (args.preset is not None) > 1:
        raise AdvisorError("give one of --from RUN_DIR and --preset NAME, not both")
    study: StudySettings | None = None
    if args.from_run is not None:
        chosen, finished = preset_from_run(args.from_run)
        study = finished.settings
        out = args.out or args.from_run / "train"
    elif args.preset is not None:
        chosen = load_preset(args.preset)
        out = args.out or Path("runs") / f"train-{chosen.name}"
    else:
        chosen = explicit_preset(overrides)
        out = args.out or Path("runs") / f"train-{overrides.task}"
    check_out_dir(out, "train")
    settings = preset_run_settings(chosen, overrides, study)
    checkpointing = args.gradient_checkpointing or chosen.gradient_checkpointing
    if args.memory_budget is not None:
        _check_memory(settings, args.memory_budget, checkpointing)
    if settings.recipe.quantize is not None:
        from tuner.models.quantize import check_quantize
        from tuner.training.runtime import pick_runtime

        check_quantize(pick_runtime().device.type)  # before the data is prepared
    mirror = resolve_data_dir(args.data_dir)
    try:
        scoring = None
        if args.eval:
            scoring = scoring_settings(
                settings, args.eval_tasks, args.eval_limit, args.prompt_format, args.allow_code_execution
            )
        options = RunOptions(
            save_steps=args.save_steps,
            scoring=scoring,
            score_each_epoch=args.score_each_epoch,
            merge=args.merge,
            gradient_checkpointing=checkpointing,
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    recipe = settings.recipe
    check_fits_model(settings.model, seq_len=recipe.seq_len, rank=None if recipe.is_full else recipe.lora.rank)
    plan = Launch(args.nproc, args.nnodes, args.rdzv_endpoint)
    if plan.world > 1 and LAUNCHED not in os.environ:  # this process launches the ranks, which train
        import torch

        gpus = torch.cuda.device_count()
        plan.check(recipe.batch_size, gpus, os.cpu_count() or 1)
        return launch(["train", *argv], plan, gpus)
    stderr = Console(stderr=True)
    if not ranks().main:  # another rank trains its part, silently; rank 0 reports
        with peer_lost():
            train_run(settings, out, data_dir=mirror, options=options)
        return 0
    if settings.recipe.epochs < MIN_IFT_EPOCHS:
        epochs = settings.recipe.epochs
        sys.stderr.write(
            f"note: {epochs} epoch(s); Biderman et al. 2024 train LoRA IFT for at least {MIN_IFT_EPOCHS}\n"
        )
    if args.eval and settings.task == "code" and not args.allow_code_execution and args.eval_tasks is None:
        sys.stderr.write("note: HumanEval left out: it runs the model's code; pass --allow-code-execution\n")
    reporter = TrainRichReporter(stderr, stderr if args.json else Console())
    try:
        with peer_lost():
            result = train_run(settings, out, data_dir=mirror, options=options, report=reporter)
    finally:
        reporter.close()
    if result is None:
        return 0
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return 0


def _check_memory(settings: RunSettings, memory_budget: str, gradient_checkpointing: bool) -> None:
    """AdvisorError when the run's estimated step exceeds the budget, before anything is written."""
    from tuner.memory.bounds import run_memory_refusal
    from tuner.memory.sizes import parse_size
    from tuner.training.runtime import pick_runtime

    try:
        budget = parse_size(memory_budget)
    except ValueError as error:
        raise AdvisorError(f"--memory-budget: {error}") from None
    refusal = run_memory_refusal(settings, budget, pick_runtime().device.type, gradient_checkpointing)
    if refusal is not None:
        raise AdvisorError(refusal)
