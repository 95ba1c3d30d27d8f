"""ΔW of a PEFT adapter: scaling x B @ A per adapted module (DoRA's rescaling of the base rows included), and its
spectrum, checked against the base model's shapes first. Pure at import: torch and safetensors are imported inside
the functions that use them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.spectrum.rank import VARIANCE_SHARE, layer_module, matrix_spectrum, module_order
from tuner.spectrum.report import SpectrumReport
from tuner.spectrum.weights import ADAPTER_CONFIG, ADAPTER_WEIGHTS, WeightReader

if TYPE_CHECKING:
    import torch

_ADAPTER_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B|lora_magnitude_vector)(?:\.weight)?$")


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
    return dict(sorted(factors.items(), key=lambda item: module_order(item[0])))


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
