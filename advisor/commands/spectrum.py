"""`advisor spectrum`: how much rank a fine-tuning's weight change needs, per layer and module."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.arguments import ModelArgs
from advisor.flags import option
from tuner.errors import AdvisorError
from tuner.fullrun.report import ADAPTER, FULL_MODEL
from tuner.rundir import check_out_dir, write_json
from tuner.spectrum.rank import MODULE_TYPES
from tuner.spectrum.report import SPECTRUM_JSON, SPECTRUM_PNG, Observation, SpectrumReport
from tuner.spectrum.weights import is_adapter_dir, is_model_dir

if TYPE_CHECKING:
    from rich.table import Table

MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]n/a[/]"}
KIND_WORDS = {"adapter": "adapter", "merged": "merged model", "full": "fine-tuned model"}


@dataclass(frozen=True, kw_only=True)
class SpectrumArgs(ModelArgs):
    """`advisor spectrum`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py).
    --model is the base model; --data-dir, which every model command takes, is not read (no data is)."""

    adapter: Path | None = option(None, metavar="DIR", one_of="source", required=True)
    """a PEFT adapter directory"""
    merged: Path | None = option(None, metavar="DIR", one_of="source", required=True)
    """a model directory with an adapter merged in"""
    full_run: Path | None = option(None, metavar="DIR", one_of="source", required=True)
    """a run directory of advisor train: its model/ (full fine-tuning), else its adapter/"""
    out: Path | None = option(None, metavar="DIR", shown_default="the adapter, merged model or run directory")
    """where spectrum.json and spectrum.png go"""
    json: bool = False
    """print the spectrum as JSON on stdout"""


def spectrum(args: SpectrumArgs) -> int:
    """Measure the rank of a fine-tuning's weight change ΔW, as Biderman et al. 2024 did.

    For each attention (q, k, v, o) and MLP (gate, up, down) projection of every decoder layer: the rank that
    explains 90 % of ΔW's variance. ΔW is an adapter's scaling x B A (--adapter), or the weights minus the base
    model's (--merged, or --full-run on a run directory of `advisor train`: its model/ if it trained every
    weight, else its adapter/). --model is the base model. The paper found that full fine-tuning's ΔW needs
    10-100x the rank of a typical LoRA, MLP modules more than attention, and the first and last layers less
    than the middle ones; each is checked here. Writes spectrum.json and spectrum.png into --out (default: the
    adapter, merged model or run directory).
    """
    from rich.console import Console

    from tuner.spectrum.adapter import adapter_spectrum
    from tuner.spectrum.report import write_heatmap
    from tuner.spectrum.tuned import model_spectrum
    from tuner.spectrum.weights import base_weights
    from tuner.training.runtime import quiet_libraries

    kind, directory, default_out = _source(args.adapter, args.merged, args.full_run)
    out_dir = args.out if args.out is not None else default_out
    check_out_dir(out_dir, "files")
    quiet_libraries()
    with Console(stderr=True).status(f"reading the base model {args.model}") as status:
        base = base_weights(args.model)

        def notify(message: str) -> None:
            status.update(message)

        if kind == "adapter":
            report = adapter_spectrum(directory, base, args.model, notify=notify)
        else:
            report = model_spectrum(directory, kind, base, args.model, notify=notify)
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, png_path = out_dir / SPECTRUM_JSON, out_dir / SPECTRUM_PNG
        status.update(f"drawing {png_path}")
        write_heatmap(report, png_path)
        write_json(json_path, report.to_json())
    if args.json:
        import json

        payload = {**report.to_json(), "files": [str(json_path), str(png_path)]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return 0
    console = Console()
    lora = f", LoRA r={report.lora_rank}, alpha={report.lora_alpha:g}" if report.lora_rank is not None else ""
    dora = " (DoRA)" if report.dora else ""
    console.print(f"ΔW of the {KIND_WORDS[kind]} {directory}{dora} against {args.model}{lora}", soft_wrap=True)
    console.print(rank_table(report))
    console.print(type_table(report))
    console.print(observation_table(report.observations()))
    for note in report.notes:
        console.print(f"Note: {note}", soft_wrap=True)
    console.print(f"wrote {json_path} and {png_path}", soft_wrap=True)
    return 0


def _source(adapter: Path | None, merged: Path | None, full_run: Path | None) -> tuple[str, Path, Path]:
    """(kind, directory holding ΔW's source, default output directory), or AdvisorError for bad input."""
    given = (("--adapter", adapter), ("--merged", merged), ("--full-run", full_run))
    chosen = [(flag, path) for flag, path in given if path is not None]
    if len(chosen) != 1:
        raise AdvisorError(f"give exactly one of --adapter, --merged and --full-run, got {len(chosen)}")
    flag, path = chosen[0]
    if not path.is_dir():
        raise AdvisorError(f"{flag}: directory not found: {path}")
    if flag == "--adapter":
        if not is_adapter_dir(path):
            raise AdvisorError(f"--adapter: not a PEFT adapter directory: {path} has no adapter_config.json")
        return "adapter", path, path
    if flag == "--merged":
        if is_adapter_dir(path):
            raise AdvisorError(f"--merged: {path} is a PEFT adapter, not a model; pass it with --adapter")
        if not is_model_dir(path):
            raise AdvisorError(f"--merged: not a model directory: {path} has no config.json with weights beside it")
        return "merged", path, path
    if is_model_dir(path / FULL_MODEL):
        return "full", path / FULL_MODEL, path
    if is_adapter_dir(path / ADAPTER):
        return "adapter", path / ADAPTER, path
    raise AdvisorError(
        f"--full-run: {path} holds neither {FULL_MODEL}/ (full fine-tuning) nor {ADAPTER}/ (LoRA): "
        "is it a run directory of `advisor train`?"
    )


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def rank_table(report: SpectrumReport) -> Table:
    """rank_90 per layer (rows) and projection (columns), with each layer's median; '·' marks an unchanged one."""
    from rich import box
    from rich.table import Table

    modules = report.modules()
    table = Table(title=f"rank for {report.share:.0%} of ΔW's variance", box=box.SIMPLE_HEAD)
    table.add_column("layer", justify="right")
    for module in modules:
        table.add_column(module, justify="right")
    table.add_column("median", justify="right", style="bold")
    by_layer = report.median_rank_by_layer()
    for layer in report.layers():
        cells = []
        for module in modules:
            matrix = report.rank_of(layer, module)
            cells.append("" if matrix is None else str(matrix.rank_90) if matrix.changed else "·")
        table.add_row(str(layer), *cells, _figure(by_layer.get(layer)))
    full_ranks = {module: max(m.max_rank for m in report.matrices if m.module == module) for module in modules}
    table.add_row("of", *(str(full_ranks[module]) for module in modules), "", style="dim")
    return table


def type_table(report: SpectrumReport) -> Table:
    """Per module type: matrices, median rank_90 beside the full rank and the LoRA rank, median ||ΔW||."""
    import statistics

    from rich import box
    from rich.table import Table

    table = Table(title="per module type", box=box.SIMPLE_HEAD)
    for column in ("type", "changed", "median rank_90", "full rank", "LoRA r", "median ||ΔW||_F"):
        table.add_column(column, justify="left" if column == "type" else "right")
    medians = report.median_rank_by_type()
    lora_rank = str(report.lora_rank) if report.lora_rank is not None else "-"
    for kind in MODULE_TYPES:
        present = [m for m in report.matrices if m.module_type == kind]
        if not present:
            continue
        changed = [m for m in present if m.changed]
        norm = statistics.median(m.frobenius for m in changed) if changed else None
        table.add_row(
            kind,
            f"{len(changed)} of {len(present)}",
            _figure(medians.get(kind)),
            _figure(statistics.median(m.max_rank for m in present)),
            lora_rank,
            "-" if norm is None else f"{norm:.3g}",
        )
    return table


def observation_table(observations: list[Observation]) -> Table:
    """The paper's findings, each marked ✓ (holds here), ✗ (does not) or n/a, with the figures behind it."""
    from rich import box
    from rich.table import Table

    table = Table(title="the paper's findings (Biderman et al. 2024), checked here", box=box.SIMPLE_HEAD)
    table.add_column("")
    table.add_column("finding")
    table.add_column("here")
    for observation in observations:
        table.add_row(MARKS[observation.holds], observation.statement, observation.evidence)
    return table
