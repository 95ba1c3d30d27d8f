"""QLoRA's base model: 4-bit NF4 weights with double-quantised block constants through bitsandbytes (Dettmers et al.
2023), loaded by transformers' BitsAndBytesConfig and prepared by PEFT's k-bit preparation; computing in bf16 on a
GPU and float32 on the CPU (bitsandbytes >= 0.50 runs NF4 layers there too)."""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    import torch
    from transformers import BitsAndBytesConfig, PreTrainedModel

NF4 = "nf4"
MIN_BITSANDBYTES = (0, 50)
"""The first bitsandbytes whose NF4 layers train on the CPU as well as on CUDA."""
INSTALL = "pip install 'bitsandbytes>=0.50'"


def check_quantize(device_type: str) -> None:
    """AdvisorError, one line saying why, where bitsandbytes cannot train NF4 layers on this device type."""
    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        raise AdvisorError(f"--quantize nf4 (QLoRA) needs bitsandbytes, which is not installed: {INSTALL}") from None
    found = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if found < MIN_BITSANDBYTES:
        raise AdvisorError(f"--quantize nf4 (QLoRA) needs bitsandbytes 0.50 or later, found {version}: {INSTALL}")
    if device_type not in ("cpu", "cuda"):
        raise AdvisorError(f"--quantize nf4 (QLoRA) trains on CUDA or the CPU through bitsandbytes, not {device_type}")
    try:
        import bitsandbytes  # noqa: F401  (its native library is loaded on import)
    except (ImportError, OSError, RuntimeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AdvisorError(f"--quantize nf4 (QLoRA): bitsandbytes {version} cannot load here: {first}") from None


def quantization_config(compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    """NF4 with double quantisation, the products in `compute_dtype` (QLoRA's own settings)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def prepare_quantized(model: PreTrainedModel) -> PreTrainedModel:
    """The 4-bit model as PEFT prepares it for training (its unquantised weights in float32, frozen), with
    bitsandbytes' CPU inference packing turned off: that packing rewrites each layer into a bf16 layout the first
    time it runs without gradients (the held-out losses would not be the training's) and fails on layers narrower
    than a quantisation block."""
    import bitsandbytes
    from peft import prepare_model_for_kbit_training

    for module in model.modules():
        if isinstance(module, bitsandbytes.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    for parameter in model.parameters():
        if not isinstance(parameter, bitsandbytes.nn.Params4bit) and parameter.device.type == "cpu":
            # Loaded in the file's own dtype, these are views into the memory-mapped checkpoint, which they keep
            # mapped: with every page of it that quantising the linear layers read, resident (3x the 4-bit weights).
            parameter.data = parameter.data.clone()
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def is_quantized(model: object) -> bool:
    """Whether a loaded model's weights are 4-bit."""
    return bool(getattr(model, "is_loaded_in_4bit", False))
