"""The spectrum report of one adapter or tuned model: its summaries, the paper's three findings checked on it, its
JSON (spectrum.json) and its heat map (spectrum.png, drawn with matplotlib imported inside the function)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tuner.spectrum.rank import MODULE_TYPES, MODULES, VARIANCE_SHARE, MatrixSpectrum

SPECTRUM_VERSION = 1
"""Bumped when spectrum.json's meaning changes."""
SPECTRUM_JSON = "spectrum.json"
SPECTRUM_PNG = "spectrum.png"
TYPICAL_LORA_RANK = 16  # the paper's "typical" low rank, against which full fine-tuning needs 10-100x
FULL_RANK_FACTOR = 10  # the low end of the paper's 10-100x
SOURCE_KINDS = ("adapter", "merged", "full")
"""A PEFT adapter; a model with an adapter merged in; a full fine-tuning's model (or any tuned model)."""


class Observation(NamedTuple):
    """One of the paper's findings checked on a report: whether it holds here (None: cannot tell) and why."""

    statement: str
    holds: bool | None
    evidence: str


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _figure(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


@dataclass(frozen=True)
class SpectrumReport:
    """The spectrum of every attention and MLP weight change of one fine-tuned model or adapter."""

    source: str
    """The adapter or model directory that was analysed."""
    kind: str
    """One of SOURCE_KINDS: 'adapter', 'merged' or 'full'."""
    base_model: str
    """The base model ΔW is measured against."""
    matrices: tuple[MatrixSpectrum, ...]
    lora_rank: int | None = None
    """The adapter's rank r; None unless the source is an adapter."""
    lora_alpha: float | None = None
    dora: bool = False
    """The adapter is DoRA: ΔW also rescales the base weight's rows, so it is not bounded by r."""
    share: float = VARIANCE_SHARE
    """The share of ΔW's variance that rank_90 explains."""
    notes: tuple[str, ...] = field(default=())
    """What the reader should know about how ΔW was read."""

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}, got {self.kind!r}")
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {self.share}")

    def changed(self) -> list[MatrixSpectrum]:
        """The matrices that changed (summaries leave out the unchanged ones, e.g. modules an adapter skipped)."""
        return [matrix for matrix in self.matrices if matrix.changed]

    def layers(self) -> list[int]:
        return sorted({matrix.layer for matrix in self.matrices})

    def modules(self) -> list[str]:
        """The projections present, in MODULES order."""
        present = {matrix.module for matrix in self.matrices}
        return [module for module in MODULES if module in present]

    def rank_of(self, layer: int, module: str) -> MatrixSpectrum | None:
        return next((m for m in self.matrices if m.layer == layer and m.module == module), None)

    def median_rank_by_type(self) -> dict[str, float]:
        """Median rank_90 of the changed matrices per module type ('attention', 'mlp'), for types present."""
        medians = {kind: _median([m.rank_90 for m in self.changed() if m.module_type == kind]) for kind in MODULE_TYPES}
        return {kind: value for kind, value in medians.items() if value is not None}

    def median_rank_by_layer(self) -> dict[int, float]:
        """Median rank_90 of the changed matrices per layer."""
        medians = {layer: _median([m.rank_90 for m in self.changed() if m.layer == layer]) for layer in self.layers()}
        return {layer: value for layer, value in medians.items() if value is not None}

    def median_rank(self) -> float | None:
        return _median([matrix.rank_90 for matrix in self.changed()])

    def observations(self) -> list[Observation]:
        """The paper's three findings about ΔW's rank, checked on this report."""
        return [self._mlp_over_attention(), self._ends_below_middle(), self._full_rank_factor()]

    def _mlp_over_attention(self) -> Observation:
        statement = "MLP modules need more rank than attention"
        by_type = self.median_rank_by_type()
        if "mlp" not in by_type or "attention" not in by_type:
            missing = " and ".join(kind for kind in MODULE_TYPES if kind not in by_type)
            return Observation(statement, None, f"no changed {missing} matrices")
        evidence = f"median rank_90: MLP {_figure(by_type['mlp'])}, attention {_figure(by_type['attention'])}"
        return Observation(statement, by_type["mlp"] > by_type["attention"], evidence)

    def _ends_below_middle(self) -> Observation:
        statement = "The first and last layers need less rank than the middle ones"
        layers = sorted({matrix.layer for matrix in self.changed()})
        if len(layers) < 3:
            return Observation(statement, None, f"needs at least 3 changed layers, found {len(layers)}")
        first, last = layers[0], layers[-1]
        ends = statistics.mean(m.rank_90 for m in self.changed() if m.layer in (first, last))
        middle = statistics.mean(m.rank_90 for m in self.changed() if m.layer not in (first, last))
        evidence = (
            f"mean rank_90: layers {first} and {last} {_figure(ends)}, "
            f"layers {layers[1]}-{layers[-2]} {_figure(middle)}"
        )
        return Observation(statement, ends < middle, evidence)

    def _full_rank_factor(self) -> Observation:
        low = TYPICAL_LORA_RANK
        statement = f"Full fine-tuning's ΔW needs 10-100x a typical LoRA rank (r={low})"
        if self.kind == "adapter":
            bound = (
                f"a DoRA adapter's ΔW is a rank-{self.lora_rank} product plus a rescaling of the base rows"
                if self.dora
                else f"an adapter's ΔW has rank at most r={self.lora_rank}"
            )
            return Observation(statement, None, f"does not apply to an adapter: {bound}")
        median = self.median_rank()
        if median is None:
            return Observation(statement, None, "no weight changed")
        ratio = median / low
        evidence = f"median rank_90 {_figure(median)} = {ratio:.1f}x r={low}"
        if self.kind == "merged":
            evidence += " (a merged adapter's ΔW has rank at most its r)"
        possible = statistics.median(matrix.max_rank for matrix in self.changed())
        if possible < FULL_RANK_FACTOR * low:
            return Observation(
                statement, None, f"{evidence}; matrices too small to tell (median full rank {_figure(possible)})"
            )
        return Observation(statement, ratio >= FULL_RANK_FACTOR, evidence)

    def to_json(self) -> dict[str, Any]:
        """spectrum.json: the record, plus its summaries and observations for readers (from_json ignores them)."""
        return {
            "version": SPECTRUM_VERSION,
            "source": self.source,
            "kind": self.kind,
            "base_model": self.base_model,
            "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha,
            "dora": self.dora,
            "share": self.share,
            "notes": list(self.notes),
            "matrices": [matrix.to_json() for matrix in self.matrices],
            "median_rank_by_type": self.median_rank_by_type(),
            "median_rank_by_layer": {str(layer): value for layer, value in self.median_rank_by_layer().items()},
            "observations": [observation._asdict() for observation in self.observations()],
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> SpectrumReport:
        if not isinstance(payload, dict):
            raise ValueError(f"a spectrum report is a JSON object, got {type(payload).__name__}")
        version = payload.get("version")
        if not isinstance(version, int) or version > SPECTRUM_VERSION:
            raise ValueError(f"spectrum report version {version!r} is not one this advisor reads ({SPECTRUM_VERSION})")
        return cls(
            source=payload["source"],
            kind=payload["kind"],
            base_model=payload["base_model"],
            matrices=tuple(MatrixSpectrum.from_json(matrix) for matrix in payload["matrices"]),
            lora_rank=payload.get("lora_rank"),
            lora_alpha=payload.get("lora_alpha"),
            dora=bool(payload.get("dora", False)),
            share=float(payload.get("share", VARIANCE_SHARE)),
            notes=tuple(payload.get("notes", ())),
        )


def write_heatmap(report: SpectrumReport, path: Path) -> Path:
    """Draw rank_90 per layer (rows) and projection (columns) as an annotated heat map PNG at ``path``.

    Drawn with matplotlib's Agg canvas (no pyplot, no display); unadapted modules are left blank and unchanged
    ones show 0.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers, modules = report.layers(), report.modules()
    grid = np.full((len(layers), len(modules)), np.nan)
    for matrix in report.matrices:
        grid[layers.index(matrix.layer), modules.index(matrix.module)] = matrix.rank_90
    figure = Figure(figsize=(1.1 * len(modules) + 3, 0.32 * len(layers) + 2.2), layout="constrained")
    FigureCanvasAgg(figure)  # a figure of its own: no pyplot, no global state, no display
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=0)
    axes.set_xticks(range(len(modules)), modules, rotation=30, ha="right")
    axes.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    axes.set_xlabel("module")
    axes.set_ylabel("layer")
    brightest = np.nanmax(grid) if np.isfinite(grid).any() else 0.0
    for row, column in np.argwhere(np.isfinite(grid)):
        value = grid[row, column]
        colour = "black" if brightest and value > 0.6 * brightest else "white"
        axes.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, label=f"rank for {report.share:.0%} of ΔW's variance")
    what = {"adapter": "adapter", "merged": "merged model", "full": "tuned model"}[report.kind]
    title = f"Rank of ΔW for {report.share:.0%} of its variance\n{what} {report.source}"
    if report.lora_rank is not None:
        title += f" (LoRA r={report.lora_rank})"
    axes.set_title(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
