"""`advisor eval --samples K`: pass@k and distinct solutions per problem, for a model and an adapter or tuned model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings, parse_tasks
from tuner.scoring.diversity import DiversityResult, Estimate, SamplingSettings

if TYPE_CHECKING:
    from rich.table import Table

    from advisor.commands.evaluate import EvalArgs

REPORT_VERSION = 1
"""Bumped when the layout of the JSON report changes."""
CODE_REFUSAL = (
    "drawing HumanEval samples runs their code; pass --allow-code-execution to allow it "
    "(each runs in a sandbox: limits, its own process group, no network, a throwaway directory)"
)


def diversity_tasks(tasks: str | None, allow_code_execution: bool) -> tuple[str, ...]:
    """The benchmarks to draw answers for: those named (generation benchmarks only), else every generation
    benchmark (HumanEval only with permission to run code)."""
    generating = [name for name, benchmark in BENCHMARKS.items() if benchmark.generates]
    if tasks is None:
        return tuple(name for name in generating if allow_code_execution or not BENCHMARKS[name].runs_code)
    try:
        names = parse_tasks(tasks)
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    scored_by_choice = [name for name in names if not BENCHMARKS[name].generates]
    if scored_by_choice:
        raise AdvisorError(
            f"{', '.join(scored_by_choice)} scores the likelihood of given choices and draws no answers: "
            f"--samples takes {', '.join(generating)}"
        )
    if not allow_code_execution and any(BENCHMARKS[name].runs_code for name in names):
        raise AdvisorError(CODE_REFUSAL)
    return names


def _estimate(estimate: Estimate | None, digits: int) -> str:
    if estimate is None:
        return ""
    if estimate.stderr is None:
        return f"{estimate.mean:.{digits}f}"
    return f"{estimate.mean:.{digits}f} ± {estimate.stderr:.{digits}f}"


def diversity_table(task: str, results: dict[str, DiversityResult]) -> Table:
    """One benchmark's pass@k and distinct solutions per problem, one column per model."""
    from rich import box
    from rich.table import Table

    first = next(iter(results.values()))
    title = (
        f"{BENCHMARKS[task].title}, {len(first.problems)} problems: {first.samples_per_problem} answers each "
        f"at temperature {first.temperature:g}"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD, min_width=len(title) + 4)
    table.add_column("figure")
    for column in results:
        table.add_column(column, justify="right")
    for k in first.ks():
        table.add_row(f"pass@{k}", *(_estimate(result.pass_at(k), 3) for result in results.values()))
    table.add_row(
        "distinct solutions",
        *(_estimate(result.mean_distinct(), 2) for result in results.values()),
        style="bold",
    )
    if first.distinct_answers is not None:
        table.add_row(
            "distinct final answers",
            *(_estimate(result.mean_distinct_answers(), 2) for result in results.values()),
        )
    same = "formatting, comments and docstrings" if BENCHMARKS[task].runs_code else "whitespace and case"
    table.caption = f"mean per problem ± standard error over problems; distinct: differing beyond {same}"
    return table


def diversity_report(
    *,
    model: str,
    adapter: Path | None,
    tuned: Path | None,
    settings: EvalSettings,
    sampling: SamplingSettings,
    runtime: str,
    results: dict[str, dict[str, DiversityResult]],
) -> dict[str, Any]:
    """The machine-readable result of `advisor eval --samples`: per benchmark, one DiversityResult per model."""
    return {
        "version": REPORT_VERSION,
        "model": model,
        "adapter": str(adapter) if adapter else None,
        "tuned": str(tuned) if tuned else None,
        "settings": {
            "tasks": list(settings.tasks),
            "limit": settings.limit,
            "seed": settings.seed,
            "prompt_format": settings.prompt_format,
            "samples": sampling.samples,
            "temperature": sampling.temperature,
            "max_new_tokens": sampling.max_new_tokens,
        },
        "runtime": runtime,
        "results": {
            task: {column: result.to_json() for column, result in by_model.items()}
            for task, by_model in results.items()
        },
    }


def evaluate_diversity(args: EvalArgs, max_new_tokens: int | None = None) -> int:
    """Draw K sampled answers per GSM8K/HumanEval problem: pass@1, 2, 4 ... K and distinct solutions per problem.

    The base model, an --adapter on it and a --tuned model directory (a full fine-tuning run's model/ or a merged
    model) stand side by side, drawn with the same seed; Biderman et al. 2024 find LoRA keeps generations more
    diverse than full fine-tuning. `max_new_tokens` caps each answer (None: the benchmark's limit).
    """
    from rich.console import Console

    from advisor.commands.evaluate import load_adapter
    from tuner.data.load import resolve_data_dir
    from tuner.models.load import load_model, load_tokenizer, resolve_model
    from tuner.scoring.sampling import draw_samples
    from tuner.training.runtime import pick_runtime, quiet_libraries

    model, adapter, tuned = args.model, args.adapter, args.tuned
    assert args.samples is not None, "drawn only with --samples K"
    try:
        sampling = SamplingSettings(args.samples, args.temperature, max_new_tokens, args.seed)
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    names = diversity_tasks(args.tasks, args.allow_code_execution)
    if adapter is not None and not adapter.is_dir():
        raise AdvisorError(f"adapter directory not found: {adapter}")
    if tuned is not None and not tuned.is_dir():
        raise AdvisorError(f"tuned model directory not found: {tuned}")
    settings = args.settings(names)
    mirror = resolve_data_dir(args.data_dir)
    source = resolve_model(model)
    tuned_source = resolve_model(str(tuned)) if tuned is not None else None
    if args.tasks is None and not args.allow_code_execution:
        sys.stderr.write("HumanEval left out: it runs the model's code; pass --allow-code-execution to include it\n")
    quiet_libraries()
    runtime = pick_runtime()
    results: dict[str, dict[str, DiversityResult]] = {name: {} for name in names}
    with Console(stderr=True).status(f"loading {source.describe()} on {runtime.describe()}") as status:

        def draw(column: str, loaded: Any, tokenizer: Any) -> None:
            for name in names:
                drawn = draw_samples(
                    loaded,
                    tokenizer,
                    name,
                    settings,
                    sampling,
                    mirror,
                    runtime,
                    lambda m: status.update(f"{column}: {m}"),
                )
                results[name][column] = DiversityResult.from_samples(name, sampling.temperature, drawn)

        tokenizer = load_tokenizer(source)
        base = load_model(source, runtime.device, runtime.dtype)
        draw("base", base, tokenizer)
        if adapter is not None:
            status.update(f"loading adapter {adapter}")
            adapted = load_adapter(base, adapter)
            adapted.merge_adapter()  # drawn at the base model's speed: no adapter matmuls per new token
            draw("adapter", adapted, tokenizer)
            del adapted
        del base
        if tuned_source is not None:
            status.update(f"loading tuned model {tuned_source.describe()}")
            # A tuned directory without its own tokenizer (a bare save_pretrained of the weights) uses the base's.
            has_tokenizer = (Path(tuned_source.location) / "tokenizer_config.json").is_file()
            tuned_tokenizer = load_tokenizer(tuned_source) if has_tokenizer else tokenizer
            draw("tuned", load_model(tuned_source, runtime.device, runtime.dtype), tuned_tokenizer)
    if args.json:
        report = diversity_report(
            model=model,
            adapter=adapter,
            tuned=tuned,
            settings=settings,
            sampling=sampling,
            runtime=runtime.describe(),
            results=results,
        )
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    console = Console()
    for name, by_model in results.items():
        console.print(diversity_table(name, by_model))
    return 0
