"""The `advisor` command: argument parsing and dispatch only; the work lives in typed functions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from advisor.arguments import non_negative, positive, positive_number, probability, rate, size
from tuner.errors import AdvisorError
from tuner.faults import Stopped, fault_line, stop_on_signals
from tuner.models.load import DEFAULT_MODEL
from tuner.paper import FIXED_ALPHA
from tuner.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GOAL,
    DEFAULT_SEQ_LEN,
    DEFAULT_TASK,
    DEFAULT_TRIAL_TOKENS,
    DEFAULT_TRIALS,
    MAX_BATCH_SIZE,
    MAX_SEQ_LEN,
    VARIANTS,
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from advisor.commands.tune import tune

    parser = _Parser(prog="advisor", description="LoRA Advisor: LoRA settings found by real short training runs.")
    parser.add_argument("--run", type=Path, default=None, help="open the app on a run directory (resume its study)")
    parser.add_argument(
        "--storage", dest="watch_storage", default=None, metavar="URL", help="with --study: watch a shared study live"
    )
    parser.add_argument("--study", dest="watch_study", default=None, metavar="NAME", help="the study's name there")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    tune_parser = _command(commands, "tune", tune, "search LoRA settings with short real trials")
    tune_parser.add_argument(
        "--task", choices=("code", "math", "custom"), default=None, help=f"what to learn (default: {DEFAULT_TASK})"
    )
    tune_parser.add_argument(
        "--from-preset",
        default=None,
        metavar="NAME_OR_PATH",
        help="start from a preset: its task, model, batch, row length and budget, its configuration tried first",
    )
    tune_parser.add_argument(
        "--trials",
        type=positive,
        default=None,
        help=f"trials in the study (default: {DEFAULT_TRIALS}, or as many as --budget allows)",
    )
    tune_parser.add_argument(
        "--budget",
        default=None,
        help="the whole study's training tokens (200k, 1.5M tokens) or time (90s, 30min, 2h): many short trials "
        "first, the best given more (successive halving); pruned trials and the range test count",
    )
    tune_parser.add_argument(
        "--alpha",
        default=None,
        help=f"alpha: a number fixed at every rank (default: {FIXED_ALPHA:g}, LoRA Without Regret), a multiple "
        "of the rank such as 2r (the paper's), or 'search'",
    )
    tune_parser.add_argument(
        "--variants",
        default=None,
        help=f"LoRA variants to search, comma-separated from {','.join(VARIANTS)} (default: lora)",
    )
    tune_parser.add_argument(
        "--no-range-test",
        action="store_true",
        help="skip the learning-rate range test and search the default rates",
    )
    tune_parser.add_argument(
        "--trial-tokens",
        type=positive,
        default=DEFAULT_TRIAL_TOKENS,
        help=f"training tokens per trial (default: {DEFAULT_TRIAL_TOKENS})",
    )
    tune_parser.add_argument(
        "--goal",
        type=probability,
        default=DEFAULT_GOAL,
        help=f"0 learns most, 1 forgets least (default: {DEFAULT_GOAL})",
    )
    tune_parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/TASK)")
    tune_parser.add_argument(
        "--storage", default=None, help="Optuna RDB URL (default: sqlite file in the run directory)"
    )
    tune_parser.add_argument("--json", action="store_true", help="print the recommendation as JSON on stdout")
    tune_parser.add_argument(
        "--batch-size", type=size(MAX_BATCH_SIZE), default=None, help=f"rows per step (default: {DEFAULT_BATCH_SIZE})"
    )
    tune_parser.add_argument(
        "--seq-len", type=size(MAX_SEQ_LEN), default=None, help=f"tokens per packed row (default: {DEFAULT_SEQ_LEN})"
    )
    tune_parser.add_argument("--seed", type=int, default=0, help="seed for sampler, split and trials (default: 0)")
    tune_parser.add_argument("--data", default=None, help="custom task: JSONL/JSON/CSV/Parquet file or hub dataset id")
    tune_parser.add_argument(
        "--prompt-column", default="prompt", help="custom task: instruction column (default: prompt)"
    )
    tune_parser.add_argument(
        "--response-column", default="response", help="custom task: answer column (default: response)"
    )
    tune_parser.add_argument(
        "--allow-code-execution",
        action="store_true",
        help="code task: score trials on HumanEval, running the generated code in a sandbox",
    )
    tune_parser.add_argument(
        "--memory-budget",
        default=None,
        help="e.g. 24GiB (GPU memory, or RAM on CPU): only configurations estimated to fit are tried",
    )
    tune_parser.add_argument(
        "--score-items",
        type=non_negative,
        default=None,
        help="benchmark items per trial (default: as many as fit in 20%% of a trial's time; 0: no scoring)",
    )
    tune_parser.add_argument(
        "--reference",
        choices=("full",),
        default=None,
        help="after the search, full fine-tuning on the same data and budget at its own rates, beside the pick",
    )
    tune_parser.add_argument(
        "--workers",
        type=positive,
        default=1,
        help="worker processes running trials at once on this machine: one per GPU, or CPU processes (default: 1)",
    )
    tune_parser.add_argument(
        "--study",
        default=None,
        metavar="NAME",
        help="the study's name in --storage: the same name joins the same study from any machine",
    )
    tune_parser.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)
    tune_parser.set_defaults(model=None)  # the preset's, else the built-in default
    _add_eval(commands)
    _add_memory(commands)
    _add_train(commands)
    _add_export(commands)
    _add_spectrum(commands)
    _add_report(commands)
    return parser


def _add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.commands.report import report

    parser = _plain_command(commands, "report", report, "write a study's files from its shared storage")
    parser.add_argument("--storage", required=True, metavar="URL", help="the Optuna RDB URL the study is stored in")
    parser.add_argument("--study", required=True, metavar="NAME", help="the study's name there")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="where its files go (default: runs/NAME)")
    parser.add_argument("--json", action="store_true", help="print the recommendation as JSON on stdout")


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.commands.train import train

    parser = _command(commands, "train", train, "train the recommended configuration for whole epochs, then score it")
    parser.set_defaults(model=None)  # the study's or preset's, else the built-in default
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from", dest="from_run", type=Path, default=None, metavar="RUN_DIR", help="a finished study's run directory"
    )
    start.add_argument("--preset", default=None, metavar="NAME_OR_PATH", help="a shipped preset's name or a file")
    parser.add_argument("--task", choices=("code", "math", "custom"), default=None, help="what to learn")
    parser.add_argument("--out", type=Path, default=None, help="where the run goes (default: RUN_DIR/train)")
    parser.add_argument("--epochs", type=positive, default=None, help="passes over the data (default: 4)")
    parser.add_argument("--learning-rate", type=rate, default=None, help="peak learning rate")
    parser.add_argument("--rank", type=positive, default=None, help="LoRA rank")
    parser.add_argument("--alpha", type=positive_number, default=None, help="LoRA alpha (default: 2 x rank)")
    parser.add_argument("--targets", choices=("attention", "mlp", "all"), default=None, help="LoRA target modules")
    parser.add_argument(
        "--method",
        choices=("lora", "full"),
        default=None,
        help="lora, or full fine-tuning of every weight, the paper's reference (default: lora)",
    )
    parser.add_argument(
        "--memory-budget", default=None, help="e.g. 24GiB: refuse a run whose estimated step exceeds it"
    )
    parser.add_argument("--batch-size", type=size(MAX_BATCH_SIZE), default=None, help="rows per optimizer step")
    parser.add_argument("--seq-len", type=size(MAX_SEQ_LEN), default=None, help="tokens per packed row")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the study's, else 0)")
    parser.add_argument("--train-examples", type=positive, default=None, help="train on the first N examples only")
    parser.add_argument("--data", default=None, help="custom task: JSONL/JSON/CSV/Parquet file or hub dataset id")
    parser.add_argument("--prompt-column", default=None, help="custom task: instruction column (default: prompt)")
    parser.add_argument("--response-column", default=None, help="custom task: answer column (default: response)")
    parser.add_argument("--save-steps", type=positive, default=200, help="steps between checkpoints (default: 200)")
    parser.add_argument("--merge", action="store_true", help="also save the base model with the adapter merged in")
    parser.add_argument("--no-eval", action="store_true", help="do not score the trained adapter")
    parser.add_argument("--eval-tasks", default=None, help="benchmarks to score (default: forgetting + the task's)")
    parser.add_argument("--eval-limit", type=positive, default=None, help="items per benchmark (default: all)")
    parser.add_argument("--score-each-epoch", action="store_true", help="also score the adapter after every epoch")
    parser.add_argument(
        "--prompt-format", choices=("chat", "plain"), default="chat", help="GSM8K/HumanEval prompts (default: chat)"
    )
    parser.add_argument(
        "--allow-code-execution", action="store_true", help="score HumanEval, running generated code in a sandbox"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _add_memory(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.commands.memory import memory

    parser = _command(commands, "memory", memory, "estimate training memory and what fits a budget")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where it trains (default: cpu)")
    parser.add_argument("--rank", type=positive, default=16, help="LoRA rank (default: 16)")
    parser.add_argument(
        "--targets",
        choices=("all", "attention", "mlp", "full"),
        default="all",
        help="LoRA targets, or full fine-tuning (default: all)",
    )
    parser.add_argument("--batch", type=size(MAX_BATCH_SIZE), default=4, help="rows per step (default: 4)")
    parser.add_argument("--seq", type=size(MAX_SEQ_LEN), default=512, help="tokens per row (default: 512)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations per layer")
    parser.add_argument("--budget", default=None, help="memory budget, e.g. 24GiB (GPU memory, or RAM on CPU)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON on stdout")


def _add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.commands.export import export
    from advisor.exports import FORMATS
    from advisor.presets import HARDWARE

    # Not with _command: --model and --data-dir do not apply to an export.
    summary = "write a preset or a study's recommendation as another tool's config"
    parser = _plain_command(commands, "export", export, summary)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from", dest="from_run", type=Path, default=None, metavar="RUN_DIR", help="a finished study's run directory"
    )
    source.add_argument(
        "--preset", default=None, metavar="NAME_OR_PATH", help="a shipped preset's name (e.g. math-24gib) or a file"
    )
    parser.add_argument("--format", dest="fmt", required=True, choices=FORMATS, help="the tool to write for")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the config and preset.yaml"
    )
    parser.add_argument(
        "--hardware",
        choices=HARDWARE,
        default=None,
        help="train on a GPU (bf16) or a CPU (float32) in the tool (default: the preset's; a study's: where it ran)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an --out that holds something (an adapter, a run, an export), replacing same-named files",
    )
    parser.add_argument("--json", action="store_true", help="print the files written as a JSON list")


def _add_spectrum(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.commands.spectrum import spectrum

    parser = _command(commands, "spectrum", spectrum, "how much rank a fine-tuning's weight change needs, per layer")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapter", type=Path, default=None, metavar="DIR", help="a PEFT adapter directory")
    source.add_argument(
        "--merged", type=Path, default=None, metavar="DIR", help="a model directory with an adapter merged in"
    )
    source.add_argument(
        "--full-run",
        type=Path,
        default=None,
        metavar="DIR",
        help="a run directory of advisor train: its model/ (full fine-tuning), else its adapter/",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where spectrum.json and spectrum.png go (default: the adapter, merged model or run directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the spectrum as JSON on stdout")


def _plain_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, function: Callable[..., int], summary: str
) -> argparse.ArgumentParser:
    """A subcommand whose description is its function's docstring."""
    return commands.add_parser(
        name, help=summary, description=function.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, function: Callable[..., int], summary: str
) -> argparse.ArgumentParser:
    """A subcommand whose description is its function's docstring, with the options the model commands share."""
    parser = _plain_command(commands, name, function, summary)
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"built-in name, hub id, local directory or .gguf file (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--data-dir", default=None, help="local dataset mirror (default: $ADVISOR_DATA_DIR, else the hub)"
    )
    return parser


def _add_eval(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.commands.evaluate import evaluate
    from tuner.scoring.benchmarks import BENCHMARKS

    parser = _command(commands, "eval", evaluate, "score a model or adapter on learning and forgetting benchmarks")
    parser.add_argument("--adapter", type=Path, default=None, help="a PEFT adapter directory to score beside its base")
    parser.add_argument(
        "--tasks",
        default=None,
        help=f"comma-separated: {','.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--limit", type=positive, default=None, help="items per benchmark, a seeded sample")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the items sampled and of --samples draws (default: 0)"
    )
    parser.add_argument(
        "--prompt-format",
        choices=("chat", "plain"),
        default="chat",
        help="GSM8K/HumanEval prompts: chat template or lm-eval's plain prompts (default: chat)",
    )
    parser.add_argument(
        "--allow-code-execution", action="store_true", help="allow running generated code (in a sandbox)"
    )
    parser.add_argument(
        "--humaneval-samples",
        type=Path,
        default=None,
        help="score HumanEval completions from a JSONL file (task_id, completion) instead of a model",
    )
    parser.add_argument(
        "--samples",
        type=positive,
        default=None,
        metavar="K",
        help="draw K sampled answers per GSM8K/HumanEval problem: pass@1..K and distinct solutions per problem, "
        "for the model, --adapter and --tuned side by side",
    )
    parser.add_argument(
        "--temperature", type=float, default=0.8, metavar="T", help="--samples: sampling temperature (default: 0.8)"
    )
    parser.add_argument(
        "--tuned", type=Path, default=None, metavar="DIR", help="--samples: also a tuned model directory"
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON on stdout")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the advisor command line; returns the exit code."""
    if argv is None:  # the command itself, not a caller in this process: train with jemalloc where it is installed
        from tuner.training.runtime import restart_with_jemalloc

        restart_with_jemalloc(["-m", "advisor", *sys.argv[1:]])
    parser = build_parser()
    args = parser.parse_args(argv)
    watch = _watched(parser, args)
    if args.command is None:
        if watch is not None:  # an unknown study or an unreachable storage is said before the app starts
            from tuner.study.watch import open_watched

            try:
                open_watched(*watch)
            except AdvisorError as error:
                sys.stderr.write(f"advisor: error: {error}\n")
                return 2
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            parser.print_help()  # the app needs a terminal; elsewhere, the commands
            return 0
        from advisor.app.app import AdvisorApp

        AdvisorApp(run_dir=args.run, watch=watch).run()
        return 0
    # The libraries' own tqdm bars would interleave with ours; tqdm reads this when first imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        with stop_on_signals():
            code = _run_command(args, argv)
        if code is not None:
            return code
    except AdvisorError as error:
        sys.stderr.write(f"advisor: error: {error}\n")
        return 2
    except KeyboardInterrupt as stop:
        how = f"stopped ({stop})" if isinstance(stop, Stopped) else "interrupted"
        if args.command == "tune":
            sys.stderr.write(f"advisor: {how}; finished trials are saved, run the same command to resume\n")
        elif args.command == "train":
            sys.stderr.write(f"advisor: {how}; run the same command to resume from the last checkpoint\n")
        else:
            sys.stderr.write(f"advisor: {how}\n")
        return stop.exit_code if isinstance(stop, Stopped) else 130
    except Exception as error:  # a full disk, a refused write or no memory, from any library: else raised
        line = fault_line(error)
        if line is None:
            raise
        sys.stderr.write(f"advisor: error: {line}; what was saved stays, run the same command to resume\n")
        return 2
    parser.error(f"unknown command {args.command}")


def _run_command(args: argparse.Namespace, argv: Sequence[str] | None) -> int | None:
    """Run the subcommand `args` names; None for an unknown one."""
    if args.command in ("tune", "train"):
        from tuner.training.compilation import compile_mode

        compile_mode()  # a bad ADVISOR_COMPILE is said before anything loads
    if args.command == "tune":
        from advisor.commands.tune import tune

        return tune(
            task=args.task,
            model=args.model,
            trials=args.trials,
            trial_tokens=args.trial_tokens,
            goal=args.goal,
            out=args.out,
            data_dir=args.data_dir,
            storage=args.storage,
            json_output=args.json,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            seed=args.seed,
            data=args.data,
            prompt_column=args.prompt_column,
            response_column=args.response_column,
            allow_code_execution=args.allow_code_execution,
            score_items=args.score_items,
            memory_budget=args.memory_budget,
            from_preset=args.from_preset,
            study_budget=args.budget,
            alpha=args.alpha,
            variants=args.variants,
            range_test=not args.no_range_test,
            reference=args.reference,
            workers=args.workers,
            study=args.study,
            worker_process=args.worker_process,
            argv=_after_command(sys.argv[1:] if argv is None else argv, "tune"),
        )
    if args.command == "eval":
        return _run_eval(args)
    if args.command == "train":
        return _run_train(args)
    if args.command == "memory":
        from advisor.commands.memory import memory

        return memory(
            model=args.model,
            device=args.device,
            rank=args.rank,
            targets=args.targets,
            batch=args.batch,
            seq_len=args.seq,
            gradient_checkpointing=args.gradient_checkpointing,
            budget=args.budget,
            json_output=args.json,
        )
    if args.command == "export":
        from advisor.commands.export import export

        return export(
            from_run=args.from_run,
            preset=args.preset,
            fmt=args.fmt,
            out=args.out,
            json_output=args.json,
            hardware=args.hardware,
            force=args.force,
        )
    if args.command == "report":
        from advisor.commands.report import report

        return report(storage=args.storage, study=args.study, out=args.out, json_output=args.json)
    if args.command == "spectrum":
        from advisor.commands.spectrum import spectrum

        return spectrum(
            model=args.model,
            adapter=args.adapter,
            merged=args.merged,
            full_run=args.full_run,
            out=args.out,
            data_dir=args.data_dir,
            json_output=args.json,
        )
    return None


def _watched(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, str] | None:
    """The shared study the app watches, (URL, NAME) from the top-level --storage and --study; None without them."""
    given = (args.watch_storage, args.watch_study)
    if given == (None, None):
        return None
    if None in given:
        parser.error("--storage URL and --study NAME go together: the app watches study NAME in the storage at URL")
    if args.command is not None or args.run is not None:
        parser.error("--storage and --study before a command open the app on a shared study: give them alone")
    return args.watch_storage, args.watch_study


def _after_command(argv: Sequence[str], command: str) -> list[str]:
    """The arguments after the command's name (what a worker process is started with)."""
    words = list(argv)
    return words[words.index(command) + 1 :] if command in words else words


def _run_train(args: argparse.Namespace) -> int:
    from advisor.commands.train import Overrides, train

    names = ("model", "task", "rank", "alpha", "targets", "learning_rate", "epochs", "batch_size", "seq_len", "seed")
    names += ("train_examples", "data", "prompt_column", "response_column", "method")
    return train(
        from_run=args.from_run,
        preset=args.preset,
        overrides=Overrides(**{name: getattr(args, name) for name in names}),
        out=args.out,
        data_dir=args.data_dir,
        save_steps=args.save_steps,
        merge=args.merge,
        score=not args.no_eval,
        eval_tasks=args.eval_tasks,
        eval_limit=args.eval_limit,
        score_each_epoch=args.score_each_epoch,
        prompt_format=args.prompt_format,
        allow_code_execution=args.allow_code_execution,
        memory_budget=args.memory_budget,
        json_output=args.json,
    )


def _run_eval(args: argparse.Namespace) -> int:
    from advisor.commands.evaluate import evaluate, evaluate_samples

    if args.humaneval_samples is not None:
        return evaluate_samples(
            samples=args.humaneval_samples, allow_code_execution=args.allow_code_execution, json_output=args.json
        )
    if args.samples is not None:
        from advisor.commands.diversity import evaluate_diversity

        return evaluate_diversity(
            model=args.model,
            adapter=args.adapter,
            tuned=args.tuned,
            tasks=args.tasks,
            samples=args.samples,
            temperature=args.temperature,
            limit=args.limit,
            seed=args.seed,
            prompt_format=args.prompt_format,
            allow_code_execution=args.allow_code_execution,
            data_dir=args.data_dir,
            json_output=args.json,
        )
    if args.tuned is not None:
        raise AdvisorError("--tuned is drawn from only with --samples K (pass@k and distinct solutions)")
    return evaluate(
        model=args.model,
        adapter=args.adapter,
        tasks=args.tasks,
        limit=args.limit,
        seed=args.seed,
        prompt_format=args.prompt_format,
        allow_code_execution=args.allow_code_execution,
        data_dir=args.data_dir,
        json_output=args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
