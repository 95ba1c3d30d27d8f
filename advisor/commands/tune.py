"""`advisor tune`: the headless study."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from advisor.arguments import ModelArgs, non_negative, positive, probability, size
from advisor.flags import option
from tuner.defaults import (
    DATA_FORMATS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_GOAL,
    DEFAULT_SEQ_LEN,
    DEFAULT_TASK,
    DEFAULT_TRIAL_TOKENS,
    DEFAULT_TRIALS,
    MAX_BATCH_SIZE,
    MAX_BUDGET_TRIALS,
    MAX_SEQ_LEN,
    REGIMES,
    TASKS,
    VARIANTS,
)
from tuner.errors import AdvisorError
from tuner.models.load import DEFAULT_MODEL
from tuner.paper import FIXED_ALPHA


@dataclass(frozen=True, kw_only=True)
class TuneArgs(ModelArgs):
    """`advisor tune`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py)."""

    model: str | None = option(None, shown_default=DEFAULT_MODEL)  # the preset's, else the built-in default
    task: str | None = option(None, choices=TASKS, shown_default=DEFAULT_TASK)
    """what to learn"""
    from_preset: str | None = option(None, metavar="NAME_OR_PATH")
    """start from a preset: its task, model, batch, row length and budget, its configuration tried first"""
    trials: int | None = option(
        None, parse=positive, shown_default=f"{DEFAULT_TRIALS}, or as many as --search-budget allows"
    )
    """trials in the study"""
    search_budget: str | None = option(None, aliases=("--budget",))
    """the whole study's training tokens (200k, 1.5M tokens) or time (90s, 30min, 2h): many short trials first, the
    best given more (successive halving); pruned trials and the range test count"""
    alpha: str | None = option(None, shown_default=f"{FIXED_ALPHA:g}, LoRA Without Regret")
    """alpha: a number fixed at every rank, a multiple of the rank such as 2r (the paper's), or 'search'"""
    variants: str | None = option(None, fill={"variants": ",".join(VARIANTS)}, shown_default="lora")
    """LoRA variants to search, comma-separated from {variants}"""
    range_test: bool = True
    """skip the learning-rate range test and search the default rates"""
    trial_tokens: int = option(DEFAULT_TRIAL_TOKENS, parse=positive)
    """training tokens per trial"""
    goal: float = option(DEFAULT_GOAL, parse=probability)
    """0 learns most, 1 forgets least"""
    out: Path | None = option(None, shown_default="runs/TASK")
    """run directory"""
    storage: str | None = option(None, shown_default="sqlite file in the run directory")
    """Optuna RDB URL"""
    json: bool = False
    """print the recommendation as JSON on stdout"""
    batch_size: int | None = option(None, parse=size(MAX_BATCH_SIZE), shown_default=DEFAULT_BATCH_SIZE)
    """rows per step"""
    seq_len: int | None = option(None, parse=size(MAX_SEQ_LEN), shown_default=DEFAULT_SEQ_LEN)
    """tokens per packed row"""
    seed: int = 0
    """seed for sampler, split and trials"""
    data: str | None = None
    """custom task: JSONL/JSON/CSV/Parquet file or hub dataset id"""
    prompt_column: str = "prompt"
    """custom task: instruction column"""
    response_column: str = "response"
    """custom task: answer column"""
    format: str = option("auto", choices=DATA_FORMATS, metavar="FORMAT")
    """custom task: the data's format: auto, messages, sharegpt, alpaca, prompt-completion, columns or text (auto:
    found from its columns; see `advisor data FILE`)"""
    regime: str | None = option(None, choices=REGIMES, shown_default="cpt for plain text, else ift")
    """ift: loss on the responses; cpt: continued pretraining, loss on every token"""
    allow_code_execution: bool = False
    """code task: score trials on HumanEval, running the generated code in a sandbox"""
    memory_budget: str | None = None
    """e.g. 24GiB (GPU memory, or RAM on CPU): only configurations estimated to fit are tried"""
    quantize: str | None = option(
        None, choices=("none", "nf4", "search"), shown_default="nf4 where only it fits the budget"
    )
    """nf4: QLoRA, the trials train on the base model's weights in 4-bit NF4 (bitsandbytes); none: 16-bit;
    search: each trial draws 16 or 4 bits where both fit"""
    score_items: int | None = option(
        None, parse=non_negative, shown_default="as many as fit in 20% of a trial's time; 0: no scoring"
    )
    """benchmark items per trial"""
    reference: str | None = option(None, choices=("full",))
    """after the search, full fine-tuning on the same data and budget at its own rates, beside the pick"""
    workers: int = option(1, parse=positive)
    """worker processes running trials at once on this machine: one per GPU, or CPU processes"""
    study: str | None = option(None, metavar="NAME")
    """the study's name in --storage: the same name joins the same study from any machine"""
    worker_process: bool = option(False, hidden=True)
    """a worker of --workers N: runs trials only (its parent holds the run directory)"""


def tune(args: TuneArgs, argv: Sequence[str] = ()) -> int:
    """Find a LoRA configuration for your task with real short training runs searched by Optuna.

    A learning-rate range test sets the searched rates; a single educated guess (the width rule's rate, all
    linear layers, r 16) and the same at r 256 run first, then TPE searches rate, rank and target modules
    (and LoRA variants with --variants) under successive halving: many short trials, the best trained on.
    --search-budget caps the whole study's training tokens or time. Trials that survive are scored on learning
    (GSM8K, or HumanEval with --allow-code-execution) and forgetting (HellaSwag, WinoGrande, ARC-Challenge)
    on subsets that keep scoring within 20 % of a trial's time; the Pareto front and a plot end the study.
    Running the same command again resumes the study in --out. With --from-preset, the preset's task, model, batch, row
    length and memory budget are the defaults, and its configuration is the first trial. With --reference full,
    full fine-tuning then trains on the same data and budget at rates around the pick's / 10 and the paper's,
    and the study reports the ratio of the best rates and the held-out loss gap (Biderman et al. 2024's reference);
    where the pick is scored, the best full run is scored on the same items, beside it on the plot.
    With --workers N, N processes run the trials at once (one per GPU); with --storage URL --study NAME, processes
    on other machines join the same study, and whichever finishes last writes the recommendation.
    """
    from rich.console import Console

    from advisor.presets import load_preset
    from advisor.progress import RichReporter
    from tuner.data.load import resolve_data_dir
    from tuner.memory.sizes import parse_size
    from tuner.models.limits import check_fits_model
    from tuner.rundir import check_out_dir
    from tuner.settings import DataSettings, StudySettings, TrainBudget
    from tuner.study.budget import StudyBudget
    from tuner.study.options import StudyOptions
    from tuner.study.range_test import RangeTestPlan
    from tuner.study.run import run_study
    from tuner.study.space import SearchSpace, alpha_choice, trial_params
    from tuner.training.compilation import compile_mode

    compile_mode()  # a bad ADVISOR_COMPILE is said before anything loads
    preset = load_preset(args.from_preset) if args.from_preset is not None else None
    task = args.task or (preset.task if preset else DEFAULT_TASK)
    model = args.model or (preset.model if preset else None) or DEFAULT_MODEL
    batch_size, seq_len = args.batch_size, args.seq_len
    if batch_size is None:  # not `or`: a 0 given here is refused by TrainBudget, never taken for the default
        batch_size = preset.recipe.batch_size if preset else DEFAULT_BATCH_SIZE
    if seq_len is None:
        seq_len = preset.recipe.seq_len if preset else DEFAULT_SEQ_LEN
    memory_budget = args.memory_budget or (preset.memory_budget if preset else None)
    out = args.out or Path("runs") / task
    check_out_dir(out, "study")
    first = [trial_params(preset.recipe.lora, preset.recipe.learning_rate)] if preset is not None else []
    try:
        spend = None
        if args.search_budget is not None:
            spend = StudyBudget.parse(args.search_budget, _spelt(argv, "--search-budget", "--budget"))
        chosen = tuple(v.strip() for v in (args.variants or "lora").split(",") if v.strip())  # SearchSpace checks
        space = SearchSpace(variants=chosen, **alpha_choice(args.alpha or f"{FIXED_ALPHA:g}"))  # type: ignore[arg-type]
        trials = args.trials
        if trials is None:
            trials = DEFAULT_TRIALS if spend is None else MAX_BUDGET_TRIALS
        budget_bytes = parse_size(memory_budget) if memory_budget is not None else None
        budget = TrainBudget(train_tokens=args.trial_tokens, batch_size=batch_size, seq_len=seq_len)
        data_settings = DataSettings(
            task=task,
            source=args.data,
            prompt_column=args.prompt_column,
            response_column=args.response_column,
            seed=args.seed,
            format=args.format,
            regime=args.regime,
        )
        settings = StudySettings(
            model=model,
            data=data_settings,
            trials=trials,
            budget=budget,
            goal=args.goal,
            memory_budget=budget_bytes,
            search_budget=spend,
            quantize=args.quantize or (preset.recipe.quantize if preset else None),
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    check_fits_model(model, seq_len=seq_len, rank=preset.recipe.lora.rank if preset else None)
    mirror = resolve_data_dir(args.data_dir)
    stderr = Console(stderr=True)
    reporter = RichReporter(stderr, stderr if args.json else Console())
    spawn = None
    workers = args.workers
    if workers > 1:

        def spawn() -> None:
            from advisor.commands.workers import run_workers

            reporter.console.print(f"starting {workers} workers on this machine")
            codes = run_workers(argv, workers, lambda line: reporter.console.print(line, markup=False, highlight=False))
            for index, code in enumerate(codes, start=1):
                if code != 0:
                    reporter.console.print(f"worker {index} exited with code {code}: this process runs what it left")

    try:
        options = StudyOptions(
            data_dir=mirror,
            storage=args.storage,
            space=space,
            report=reporter,
            allow_code_execution=args.allow_code_execution,
            score_items=args.score_items,
            first_configurations=tuple(first),
            range_test=RangeTestPlan() if args.range_test else None,
            reference=args.reference,
            study=args.study,
            worker=args.worker_process,
            spawn=spawn,
        )
        recommendation = run_study(settings, out, options)
    finally:
        reporter.close()
    if args.json and recommendation is not None:
        sys.stdout.write(json.dumps(recommendation.to_json(), indent=2, default=str) + "\n")
    return 0


def _spelt(argv: Sequence[str], name: str, *aliases: str) -> str:
    """The spelling of an option the command line used (its error names what was typed), else its name."""
    typed = [word.split("=", 1)[0] for word in argv if word.split("=", 1)[0] in (name, *aliases)]
    return typed[-1] if typed else name
