"""ΔW of a tuned model: its weights minus the base model's, per attention and MLP weight of its decoder layers, and
its spectrum. Pure at import: torch is imported inside the function that uses it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import AdvisorError
from tuner.spectrum.rank import MODULES, VARIANCE_SHARE, layer_module, matrix_spectrum, module_order
from tuner.spectrum.report import SpectrumReport
from tuner.spectrum.weights import WeightReader, model_weights

if TYPE_CHECKING:
    import torch


def tuned_names(tuned: WeightReader, base: WeightReader, where: str) -> list[str]:
    """The attention and MLP weights of the decoder layers both models hold, in layer order; AdvisorError where a
    weight is missing from the base or differs in shape."""
    tuned_shapes, base_shapes = tuned.shapes(), base.shapes()
    names = sorted(
        (name for name, shape in tuned_shapes.items() if len(shape) == 2 and layer_module(name)), key=module_order
    )
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
