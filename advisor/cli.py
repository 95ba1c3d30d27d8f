"""The `advisor` command: argument parsing and dispatch only; the work lives in typed functions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from tuner.errors import AdvisorError
from tuner.models import DEFAULT_MODEL


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from advisor.tune import tune

    parser = _Parser(prog="advisor", description="LoRA Advisor: LoRA settings found by real short training runs.")
    parser.add_argument("--run", type=Path, default=None, help="open the app on a run directory (resume its study)")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    tune_parser = _command(commands, "tune", tune, "search LoRA settings with short real trials")
    tune_parser.add_argument(
        "--task", choices=("code", "math", "custom"), default="code", help="what to learn (default: code)"
    )
    tune_parser.add_argument("--trials", type=int, default=12, help="trials in the study (default: 12)")
    tune_parser.add_argument(
        "--trial-tokens", type=int, default=65536, help="training tokens per trial (default: 65536)"
    )
    tune_parser.add_argument(
        "--goal", type=_probability, default=0.5, help="0 learns most, 1 forgets least (default: 0.5)"
    )
    tune_parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/TASK)")
    tune_parser.add_argument(
        "--storage", default=None, help="Optuna RDB URL (default: sqlite file in the run directory)"
    )
    tune_parser.add_argument("--json", action="store_true", help="print the recommendation as JSON on stdout")
    tune_parser.add_argument("--batch-size", type=int, default=4, help="rows per optimizer step (default: 4)")
    tune_parser.add_argument("--seq-len", type=int, default=512, help="tokens per packed row (default: 512)")
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
        type=_non_negative,
        default=None,
        help="benchmark items per trial (default: as many as fit in 20%% of a trial's time; 0: no scoring)",
    )
    _add_eval(commands)
    _add_memory(commands)
    return parser


def _add_memory(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.memory_command import memory

    parser = _command(commands, "memory", memory, "estimate training memory and what fits a budget")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where it trains (default: cpu)")
    parser.add_argument("--rank", type=_positive, default=16, help="LoRA rank (default: 16)")
    parser.add_argument(
        "--targets",
        choices=("all", "attention", "mlp", "full"),
        default="all",
        help="LoRA targets, or full fine-tuning (default: all)",
    )
    parser.add_argument("--batch", type=_positive, default=4, help="rows per step (default: 4)")
    parser.add_argument("--seq", type=_positive, default=512, help="tokens per row (default: 512)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations per layer")
    parser.add_argument("--budget", default=None, help="memory budget, e.g. 24GiB (GPU memory, or RAM on CPU)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON on stdout")


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, function: Callable[..., int], summary: str
) -> argparse.ArgumentParser:
    """A subcommand whose description is its function's docstring, with the options every command shares."""
    parser = commands.add_parser(
        name, help=summary, description=function.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"built-in name, hub id, local directory or .gguf file (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--data-dir", default=None, help="local dataset mirror (default: $ADVISOR_DATA_DIR, else the hub)"
    )
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _add_eval(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from advisor.evaluate import evaluate

    parser = _command(commands, "eval", evaluate, "score a model or adapter on learning and forgetting benchmarks")
    parser.add_argument("--adapter", type=Path, default=None, help="a PEFT adapter directory to score beside its base")
    parser.add_argument(
        "--tasks",
        default=None,
        help="comma-separated: hellaswag,winogrande,arc_challenge,gsm8k,humaneval (default: all)",
    )
    parser.add_argument("--limit", type=_positive, default=None, help="items per benchmark, a seeded sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of items (default: 0)")
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
    parser.add_argument("--json", action="store_true", help="print the scores as JSON on stdout")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the advisor command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            parser.print_help()  # the app needs a terminal; elsewhere, the commands
            return 0
        from advisor.app import AdvisorApp

        AdvisorApp(run_dir=args.run).run()
        return 0
    # The libraries' own tqdm bars would interleave with ours; tqdm reads this when first imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        if args.command == "tune":
            from advisor.tune import tune

            return tune(
                task=args.task,
                model=args.model,
                trials=args.trials,
                trial_tokens=args.trial_tokens,
                goal=args.goal,
                out=args.out or Path("runs") / args.task,
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
            )
        if args.command == "eval":
            return _run_eval(args)
        if args.command == "memory":
            from advisor.memory_command import memory

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
    except AdvisorError as error:
        sys.stderr.write(f"advisor: error: {error}\n")
        return 2
    except KeyboardInterrupt:
        if args.command == "tune":
            sys.stderr.write("advisor: interrupted; finished trials are saved, run the same command to resume\n")
        else:
            sys.stderr.write("advisor: interrupted\n")
        return 130
    parser.error(f"unknown command {args.command}")


def _run_eval(args: argparse.Namespace) -> int:
    from advisor.evaluate import evaluate, evaluate_samples

    if args.humaneval_samples is not None:
        return evaluate_samples(
            samples=args.humaneval_samples, allow_code_execution=args.allow_code_execution, json_output=args.json
        )
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
