"""The `advisor` command: each subcommand's flags come from its arguments record, its help from its function's
docstring (advisor/flags.py); the work lives in the command modules."""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from advisor.commands.data import DataArgs, data
from advisor.commands.evaluate import EvalArgs, evaluate
from advisor.commands.export import ExportArgs, export
from advisor.commands.memory import MemoryArgs, memory
from advisor.commands.report import ReportArgs, report
from advisor.commands.spectrum import SpectrumArgs, spectrum
from advisor.commands.train import TrainArgs, train
from advisor.commands.tune import TuneArgs, tune
from advisor.flags import add_flags, from_namespace, option
from tuner.errors import AdvisorError
from tuner.faults import Stopped, fault_line, stop_on_signals


@dataclass(frozen=True, kw_only=True)
class AppArgs:
    """LoRA Advisor: LoRA settings found by real short training runs."""

    run: Path | None = None
    """open the app on a run directory (resume its study)"""
    watch_storage: str | None = option(None, name="--storage", metavar="URL")
    """with --study: watch a shared study live"""
    watch_study: str | None = option(None, name="--study", metavar="NAME")
    """the study's name there"""


class Command(NamedTuple):
    """A subcommand: its arguments record, the function that runs it and the line `advisor --help` shows."""

    record: type
    function: Callable[..., int]
    summary: str
    resume: str = ""
    """What to say after an interrupt (how to resume), where the command can resume."""


COMMANDS = {
    "tune": Command(
        TuneArgs,
        tune,
        "search LoRA settings with short real trials",
        "finished trials are saved, run the same command to resume",
    ),
    "data": Command(DataArgs, data, "show a dataset's format, trained tokens and rendered examples"),
    "eval": Command(EvalArgs, evaluate, "score a model or adapter on learning and forgetting benchmarks"),
    "memory": Command(MemoryArgs, memory, "estimate training memory and what fits a budget"),
    "train": Command(
        TrainArgs,
        train,
        "train the recommended configuration for whole epochs, then score it",
        "run the same command to resume from the last checkpoint",
    ),
    "export": Command(ExportArgs, export, "write a preset or a study's recommendation as another tool's config"),
    "spectrum": Command(SpectrumArgs, spectrum, "how much rank a fine-tuning's weight change needs, per layer"),
    "report": Command(ReportArgs, report, "write a study's files from its shared storage"),
}


class _ParagraphFormatter(argparse.RawDescriptionHelpFormatter):
    """A command's description paragraph by paragraph, each filled to the terminal's width (at most 80 columns);
    indented lines (examples, lists) are kept as written."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog, width=min(shutil.get_terminal_size().columns, 80) - 2, **kwargs)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line[:1].isspace() or line.startswith("- ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                filled = textwrap.fill(" ".join(lines), width, break_on_hyphens=False)
                paragraphs.append(textwrap.indent(filled, indent))
        return "\n\n".join(paragraphs)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The `advisor` parser: the app's flags, then one subparser per command, each from its record."""
    parser = _Parser(prog="advisor", description=inspect.getdoc(AppArgs), formatter_class=_ParagraphFormatter)
    add_flags(parser, AppArgs)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, command in COMMANDS.items():
        subparser = commands.add_parser(
            name,
            help=command.summary,
            description=inspect.getdoc(command.function),
            formatter_class=_ParagraphFormatter,
        )
        add_flags(subparser, command.record)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the advisor command line; returns the exit code."""
    if argv is None:  # the command itself, not a caller in this process: train with jemalloc where it is installed
        from tuner.training.runtime import restart_with_jemalloc

        restart_with_jemalloc(["-m", "advisor", *sys.argv[1:]])
    parser = build_parser()
    args = parser.parse_args(argv)
    watch = _watched(parser, args, from_namespace(AppArgs, args))
    if args.command is None:
        return _open_app(parser, args.run, watch)
    command = COMMANDS[args.command]
    # The libraries' own tqdm bars would interleave with ours; tqdm reads this when first imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        with stop_on_signals():
            return _run(args.command, from_namespace(command.record, args), argv)
    except AdvisorError as error:
        sys.stderr.write(f"advisor: error: {error}\n")
        return 2
    except KeyboardInterrupt as stop:
        how = f"stopped ({stop})" if isinstance(stop, Stopped) else "interrupted"
        sys.stderr.write(f"advisor: {how}" + (f"; {command.resume}" if command.resume else "") + "\n")
        return stop.exit_code if isinstance(stop, Stopped) else 130
    except Exception as error:  # a full disk, a refused write or no memory, from any library: else raised
        line = fault_line(error)
        if line is None:
            raise
        sys.stderr.write(f"advisor: error: {line}; what was saved stays, run the same command to resume\n")
        return 2


def _run(name: str, record: Any, argv: Sequence[str] | None) -> int:
    """Run command `name` on its record; tune and train also get their own arguments, which their worker processes
    (tune's) and ranks (train's) run again."""
    if name in ("tune", "train"):  # their worker processes and ranks run the same arguments again
        return COMMANDS[name].function(record, _after_command(sys.argv[1:] if argv is None else argv, name))
    return COMMANDS[name].function(record)


def _open_app(parser: argparse.ArgumentParser, run: Path | None, watch: tuple[str, str] | None) -> int:
    """Open the app (on a run directory or a watched study); without a terminal, print the commands instead."""
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

    AdvisorApp(run_dir=run, watch=watch).run()
    return 0


def _watched(parser: argparse.ArgumentParser, args: argparse.Namespace, app: AppArgs) -> tuple[str, str] | None:
    """The shared study the app watches, (URL, NAME) from the top-level --storage and --study; None without them."""
    given = (app.watch_storage, app.watch_study)
    if given == (None, None):
        return None
    if app.watch_storage is None or app.watch_study is None:
        parser.error("--storage URL and --study NAME go together: the app watches study NAME in the storage at URL")
    if args.command is not None or app.run is not None:
        parser.error("--storage and --study before a command open the app on a shared study: give them alone")
    return app.watch_storage, app.watch_study


def _after_command(argv: Sequence[str], command: str) -> list[str]:
    """The arguments after the command's name (what a worker process is started with)."""
    words = list(argv)
    return words[words.index(command) + 1 :] if command in words else words


if __name__ == "__main__":
    raise SystemExit(main())
