"""The rank of a weight change ΔW: the smallest k whose k largest squared singular values hold 90 % of their sum.

Pure: each matrix's spectrum record is made from its singular values, however they were computed; the projections
(attention q, k, v, o and MLP gate, up, down) are named and ordered as in a Llama-style decoder layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

VARIANCE_SHARE = 0.9  # the rank that explains 90 % of ΔW's variance, as in Biderman et al. 2024
TOP_SINGULAR_VALUES = 8
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
MODULES = ATTENTION_MODULES + MLP_MODULES
MODULE_TYPES = ("attention", "mlp")
_LAYER_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.\w+\.(" + "|".join(MODULES) + r")$")


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


def module_order(path: str) -> tuple[int, int]:
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
