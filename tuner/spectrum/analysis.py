"""The spectrum of a fine-tuning's weight change ΔW, as in Biderman et al. 2024.

For every attention (q, k, v, o) and MLP (gate, up, down) projection of the decoder layers: the rank needed to
explain 90 % of ΔW's variance (the smallest k whose k largest squared singular values hold 90 % of their sum).
ΔW comes from a PEFT adapter (scaling x B @ A) or from a tuned model's weights minus the base model's. The paper
found full fine-tuning's ΔW needs 10-100x the rank of a typical LoRA, MLP modules more than attention, and the
first and last layers less than the middle ones. Pure at import: torch, safetensors, transformers and
matplotlib are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    import torch

SPECTRUM_VERSION = 1
"""Bumped when spectrum.json's meaning changes."""
SPECTRUM_JSON = "spectrum.json"
SPECTRUM_PNG = "spectrum.png"
VARIANCE_SHARE = 0.9  # the rank that explains 90 % of ΔW's variance, as in Biderman et al. 2024
TYPICAL_LORA_RANK = 16  # the paper's "typical" low rank, against which full fine-tuning needs 10-100x
FULL_RANK_FACTOR = 10  # the low end of the paper's 10-100x
TOP_SINGULAR_VALUES = 8
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
MODULES = ATTENTION_MODULES + MLP_MODULES
MODULE_TYPES = ("attention", "mlp")
SOURCE_KINDS = ("adapter", "merged", "full")
"""A PEFT adapter; a model with an adapter merged in; a full fine-tuning's model (or any tuned model)."""
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LAYER_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.\w+\.(" + "|".join(MODULES) + r")$")
_ADAPTER_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B|lora_magnitude_vector)(?:\.weight)?$")


def rank_for_variance(singular_values: Iterable[float], share: float = VARIANCE_SHARE) -> int:
    """The smallest k whose k largest squared singular values hold `share` of their sum; 0 for a zero matrix."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    energies = sorted((float(value) ** 2 for value in singular_values), reverse=True)
    total = math.fsum(energies)
    if total == 0.0:
        return 0
    needed = share * total * (1.0 - 1e-9)  # equal singular values reach the share exactly, not a rounding below
    cumulative = 0.0
    for k, energy in enumerate(energies, start=1):
        cumulative += energy
        if cumulative >= needed:
            return k
    return len(energies)


def module_type(module: str) -> str:
    """'attention' or 'mlp' for a projection name such as q_proj or down_proj."""
    if module in ATTENTION_MODULES:
        return "attention"
    if module in MLP_MODULES:
        return "mlp"
    raise ValueError(f"not an attention or MLP projection: {module!r}")


def layer_module(path: str) -> tuple[int, str] | None:
    """(layer index, projection) for a decoder layer's attention or MLP module path, else None.

    'model.layers.3.mlp.up_proj' (or its weight, 'model.layers.3.mlp.up_proj.weight') gives (3, 'up_proj').
    """
    match = _LAYER_MODULE.search(path.removesuffix(".weight"))
    return (int(match.group(1)), match.group(2)) if match else None


def _order(path: str) -> tuple[int, int]:
    """Sort key: layer, then the projection in MODULES order (q, k, v, o, gate, up, down)."""
    layer, module = layer_module(path) or (-1, MODULES[0])
    return layer, MODULES.index(module)


@dataclass(frozen=True)
class MatrixSpectrum:
    """The spectrum of one weight matrix's change ΔW."""

    layer: int
    """Decoder layer index, from 0."""
    module: str
    """The projection: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj."""
    shape: tuple[int, int]
    """ΔW's shape (out features, in features)."""
    rank_90: int
    """The rank that explains 90 % (the report's share) of ΔW's variance; 0 when ΔW is zero."""
    frobenius: float
    """ΔW's Frobenius norm."""
    top_singular_values: tuple[float, ...] = ()
    """ΔW's largest singular values, largest first (at most TOP_SINGULAR_VALUES)."""

    def __post_init__(self) -> None:
        module_type(self.module)  # a ValueError for anything but the seven projections
        if self.rank_90 < 0 or self.rank_90 > min(self.shape):
            raise ValueError(f"rank_90 of {self.module} must be in [0, {min(self.shape)}], got {self.rank_90}")

    @property
    def module_type(self) -> str:
        return module_type(self.module)

    @property
    def max_rank(self) -> int:
        """The highest rank a matrix of this shape can have."""
        return min(self.shape)

    @property
    def changed(self) -> bool:
        return self.frobenius > 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "module_type": self.module_type}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> MatrixSpectrum:
        return cls(
            layer=int(payload["layer"]),
            module=str(payload["module"]),
            shape=(int(payload["shape"][0]), int(payload["shape"][1])),
            rank_90=int(payload["rank_90"]),
            frobenius=float(payload["frobenius"]),
            top_singular_values=tuple(float(value) for value in payload.get("top_singular_values", ())),
        )


def matrix_spectrum(
    layer: int,
    module: str,
    shape: tuple[int, int],
    singular_values: Sequence[float],
    share: float = VARIANCE_SHARE,
) -> MatrixSpectrum:
    """A matrix's spectrum record from its singular values (any order; missing ones are zero)."""
    ordered = sorted((float(value) for value in singular_values), reverse=True)
    return MatrixSpectrum(
        layer=layer,
        module=module,
        shape=shape,
        rank_90=rank_for_variance(ordered, share),
        frobenius=math.sqrt(math.fsum(value * value for value in ordered)),
        top_singular_values=tuple(ordered[:TOP_SINGULAR_VALUES]),
    )


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


# Reading weights.


class WeightReader(Protocol):
    """Named weights, read one at a time (a model's safetensors files, or a loaded model's state dict)."""

    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    def tensor(self, name: str) -> torch.Tensor: ...


class SafetensorsWeights:
    """The weights of a directory's *.safetensors files, each read from disk when asked for."""

    def __init__(self, directory: Path) -> None:
        from safetensors import safe_open

        self.files: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        for path in sorted(directory.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    self.files[name] = path
                    self._shapes[name] = tuple(handle.get_slice(name).get_shape())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self._shapes

    def tensor(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self.files[name]), framework="pt") as handle:
            return handle.get_tensor(name)


class StateDictWeights:
    """The weights of a loaded model."""

    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.state_dict = state_dict

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(tensor.shape) for name, tensor in self.state_dict.items()}

    def tensor(self, name: str) -> torch.Tensor:
        return self.state_dict[name]


def is_adapter_dir(directory: Path) -> bool:
    return (directory / ADAPTER_CONFIG).is_file()


def is_model_dir(directory: Path) -> bool:
    """A from_pretrained directory: config.json and weights."""
    weights = [*directory.glob("*.safetensors"), *directory.glob("pytorch_model*.bin")]
    return (directory / "config.json").is_file() and bool(weights) and not is_adapter_dir(directory)


def model_weights(directory: Path) -> WeightReader:
    """A model directory's weights: its safetensors files read lazily, else the model loaded on CPU in float32."""
    if not is_model_dir(directory):
        raise AdvisorError(f"not a model directory: {directory} has no config.json with weights beside it")
    if any(directory.glob("*.safetensors")):
        return SafetensorsWeights(directory)
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise AdvisorError(f"cannot load model {directory}: {str(error).strip().splitlines()[0]}") from None
    return StateDictWeights(model.state_dict())


def base_weights(model: str) -> WeightReader:
    """The base model's weights: read from its safetensors files where it has them, else loaded on CPU in float32."""
    import torch

    from tuner.models.load import load_model, loadable_location, resolve_model

    source = resolve_model(model)
    location = Path(loadable_location(source))  # a GGUF model is dequantised into the cache once
    if source.kind != "hub" and location.is_dir() and any(location.glob("*.safetensors")):
        return SafetensorsWeights(location)
    return StateDictWeights(load_model(source, torch.device("cpu"), torch.float32).state_dict())


# ΔW of an adapter.


@dataclass(frozen=True)
class AdapterConfig:
    """What adapter_config.json says about how the adapter's factors make ΔW."""

    rank: int
    alpha: float
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    base_model: str | None = None
    """base_model_name_or_path: what the adapter was trained on."""
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> AdapterConfig:
        path = directory / ADAPTER_CONFIG
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("peft_type", "LORA") != "LORA":
                raise AdvisorError(f"{path} describes a {payload['peft_type']} adapter; only LoRA has a ΔW = B A")
            return cls(
                rank=int(payload["r"]),
                alpha=float(payload["lora_alpha"]),
                use_rslora=bool(payload.get("use_rslora", False)),
                use_dora=bool(payload.get("use_dora", False)),
                fan_in_fan_out=bool(payload.get("fan_in_fan_out", False)),
                base_model=payload.get("base_model_name_or_path"),
                rank_pattern=dict(payload.get("rank_pattern") or {}),
                alpha_pattern=dict(payload.get("alpha_pattern") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AdvisorError(f"cannot read the adapter config {path}: {error}") from None

    def scaling(self, module_path: str) -> float:
        """peft's scaling of B A for one module: alpha / r, or alpha / sqrt(r) with rsLoRA."""
        rank = _pattern_value(self.rank_pattern, module_path, self.rank)
        alpha = _pattern_value(self.alpha_pattern, module_path, self.alpha)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


def _pattern_value(patterns: dict[str, Any], module_path: str, default: float) -> Any:
    """A rank_pattern / alpha_pattern entry for the module, matched as peft does (the path's end), else default."""
    for pattern, value in patterns.items():
        if pattern == module_path or re.fullmatch(rf"(?:.*\.)?(?:{pattern})", module_path):
            return value
    return default


@dataclass(frozen=True)
class LoraFactors:
    """One adapted module's saved factors: ΔW = scaling x B @ A (and DoRA's magnitude, if any)."""

    path: str
    """The module's path in the base model, e.g. 'model.layers.0.self_attn.q_proj'."""
    a: torch.Tensor
    """lora_A: r x in features."""
    b: torch.Tensor
    """lora_B: out features x r."""
    scaling: float
    magnitude: torch.Tensor | None = None
    """DoRA's magnitude vector (out features), else None."""
    fan_in_fan_out: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of the base weight this adapts."""
        out_features, in_features = self.b.shape[0], self.a.shape[1]
        return (in_features, out_features) if self.fan_in_fan_out else (out_features, in_features)

    def delta(self, base_weight: torch.Tensor | None = None) -> torch.Tensor:
        """ΔW in float32: scaling x B @ A; for DoRA, m / ||W + ΔW||_row x (W + ΔW) - W (needs the base weight)."""
        import torch

        product = self.scaling * (self.b.float() @ self.a.float())
        if self.fan_in_fan_out:
            product = product.T
        if self.magnitude is None:
            return product
        if base_weight is None:
            raise ValueError(f"DoRA's ΔW of {self.path} needs the base weight")
        combined = base_weight.float() + product
        norm = torch.linalg.vector_norm(combined, dim=1, keepdim=True)  # peft's weight norm, one per output row
        return (self.magnitude.float().view(-1, 1) / norm) * combined - base_weight.float()

    def singular_values(self) -> torch.Tensor:
        """scaling x B @ A's singular values from two QR factorisations, without forming it (r x r instead of
        out x in): with B = Q_B R_B and A^T = Q_A R_A, B A = Q_B (R_B R_A^T) Q_A^T."""
        import torch

        _, r_b = torch.linalg.qr(self.b.float())
        _, r_a = torch.linalg.qr(self.a.float().T)
        return abs(self.scaling) * torch.linalg.svdvals(r_b @ r_a.T)


def adapter_factors(directory: Path) -> dict[str, LoraFactors]:
    """The adapter's LoRA factors by module path, for the decoder layers' attention and MLP projections."""
    import torch

    config = AdapterConfig.read(directory)
    weights_file = directory / ADAPTER_WEIGHTS
    legacy_file = directory / "adapter_model.bin"
    parts: dict[str, dict[str, torch.Tensor]] = {}
    try:
        if weights_file.is_file():
            from safetensors.torch import load_file

            state = load_file(str(weights_file))
        elif legacy_file.is_file():
            state = torch.load(legacy_file, map_location="cpu", weights_only=True)
        else:
            raise AdvisorError(f"not a PEFT adapter directory: {directory} has no {ADAPTER_WEIGHTS}")
    except (OSError, RuntimeError) as error:  # safetensors raises its own error type, a RuntimeError subclass
        raise AdvisorError(f"cannot read the adapter weights in {directory}: {error}") from None
    for key, tensor in state.items():
        match = _ADAPTER_KEY.match(key)
        if match and layer_module(match.group(1)):
            parts.setdefault(match.group(1), {})[match.group(2)] = tensor
    factors: dict[str, LoraFactors] = {}
    for path, found in parts.items():
        if "lora_A" not in found or "lora_B" not in found:
            raise AdvisorError(f"the adapter in {directory} has only one of lora_A and lora_B for {path}")
        a, b = found["lora_A"], found["lora_B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdvisorError(
                f"the adapter in {directory} has mismatched factors for {path}: "
                f"lora_A {tuple(a.shape)}, lora_B {tuple(b.shape)}"
            )
        factors[path] = LoraFactors(
            path, a, b, config.scaling(path), found.get("lora_magnitude_vector"), config.fan_in_fan_out
        )
    return dict(sorted(factors.items(), key=lambda item: _order(item[0])))


def check_adapter_fits(factors: dict[str, LoraFactors], base: WeightReader, where: str) -> None:
    """AdvisorError naming the first module whose base weight is missing or of another shape than the adapter's."""
    shapes = base.shapes()
    for path, module in factors.items():
        name = f"{path}.weight"
        if name not in shapes:
            raise AdvisorError(f"{where} does not fit the base model: it adapts {path}, which the base model lacks")
        if tuple(shapes[name]) != module.shape:
            raise AdvisorError(
                f"{where} does not fit the base model: {path} is {module.shape[0]}x{module.shape[1]} in the adapter "
                f"(lora_B {tuple(module.b.shape)} @ lora_A {tuple(module.a.shape)}) but "
                f"{'x'.join(map(str, shapes[name]))} in the base model"
            )


def adapter_spectrum(
    directory: Path,
    base: WeightReader,
    base_model: str,
    share: float = VARIANCE_SHARE,
    notify: Callable[[str], None] | None = None,
) -> SpectrumReport:
    """The spectrum of a PEFT adapter's ΔW per module (checked against the base model's shapes first)."""
    import torch

    config = AdapterConfig.read(directory)
    factors = adapter_factors(directory)
    if not factors:
        raise AdvisorError(f"the adapter in {directory} adapts no attention or MLP projection of a decoder layer")
    where = f"the adapter in {directory}" + (f" (made for {config.base_model})" if config.base_model else "")
    check_adapter_fits(factors, base, where)
    matrices = []
    for index, (path, module) in enumerate(factors.items(), start=1):
        if notify:
            notify(f"singular values of {path} ({index}/{len(factors)})")
        layer, name = layer_module(path) or (0, "")
        if module.magnitude is None:
            singular_values = module.singular_values()
        else:
            singular_values = torch.linalg.svdvals(module.delta(base.tensor(f"{path}.weight")))
        matrices.append(matrix_spectrum(layer, name, module.shape, singular_values.tolist(), share))
    notes = ("DoRA: ΔW = m / ||W + s B A||_row (W + s B A) - W, with the base weights",) if config.use_dora else ()
    return SpectrumReport(
        source=str(directory),
        kind="adapter",
        base_model=base_model,
        matrices=tuple(matrices),
        lora_rank=config.rank,
        lora_alpha=config.alpha,
        dora=config.use_dora,
        share=share,
        notes=notes,
    )


# ΔW of a tuned model.


def tuned_names(tuned: WeightReader, base: WeightReader, where: str) -> list[str]:
    """The attention and MLP weights of the decoder layers both models hold, in layer order; AdvisorError where a
    weight is missing from the base or differs in shape."""
    tuned_shapes, base_shapes = tuned.shapes(), base.shapes()
    names = sorted((name for name, shape in tuned_shapes.items() if len(shape) == 2 and layer_module(name)), key=_order)
    if not names:
        raise AdvisorError(f"{where} holds no attention or MLP weights of decoder layers ({', '.join(MODULES)})")
    for name in names:
        if name not in base_shapes:
            raise AdvisorError(f"{where} does not fit the base model: it has {name}, which the base model lacks")
        if tuple(base_shapes[name]) != tuple(tuned_shapes[name]):
            raise AdvisorError(
                f"{where} does not fit the base model: {name} is {'x'.join(map(str, tuned_shapes[name]))} there "
                f"but {'x'.join(map(str, base_shapes[name]))} in the base model"
            )
    return names


def model_deltas(tuned: WeightReader, base: WeightReader, names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """ΔW = W_tuned - W_base in float32 per weight, one at a time; the base weight is first rounded to the tuned
    one's dtype, so a model saved in bf16 shows its training's change, not bf16's rounding."""
    for name in names:
        tuned_weight = tuned.tensor(name)
        yield name, tuned_weight.float() - base.tensor(name).to(tuned_weight.dtype).float()


def model_spectrum(
    directory: Path,
    kind: str,
    base: WeightReader,
    base_model: str,
    share: float = VARIANCE_SHARE,
    notify: Callable[[str], None] | None = None,
) -> SpectrumReport:
    """The spectrum of a tuned model's ΔW = W_tuned - W_base per attention and MLP weight of its decoder layers."""
    import torch

    tuned = model_weights(directory)
    where = f"the model in {directory}"
    names = tuned_names(tuned, base, where)
    matrices = []
    for index, (name, delta) in enumerate(model_deltas(tuned, base, names), start=1):
        if notify:
            notify(f"singular values of {name} ({index}/{len(names)})")
        layer, module = layer_module(name) or (0, "")
        singular_values = torch.linalg.svdvals(delta).tolist()
        matrices.append(matrix_spectrum(layer, module, (delta.shape[0], delta.shape[1]), singular_values, share))
    return SpectrumReport(
        source=str(directory), kind=kind, base_model=base_model, matrices=tuple(matrices), share=share
    )


# The picture.


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
