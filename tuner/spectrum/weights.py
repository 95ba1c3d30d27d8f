"""Reading weights one at a time: a model directory's safetensors files, a loaded model's state dict, the base model.

Pure at import: torch, safetensors and transformers are imported inside the functions that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    import torch

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


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
