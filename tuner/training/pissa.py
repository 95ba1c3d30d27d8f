"""PiSSA's bookkeeping: peft's PiSSA initialisation rewrites the base weights it adapts (to W - B0 A0), so keep them
and put them back, and save the trained adapter as the plain LoRA it amounts to on the untouched base.

Follows peft's PiSSA example (examples/pissa_finetuning): the initial adapter (A0, B0) is saved with
init_lora_weights=True, and save_pretrained(..., path_initial_model_for_weight_conversion=...) then writes
A B - A0 B0 as a LoRA adapter of twice the rank.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.settings import LoraSettings

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel


def targeted_weights(model: PreTrainedModel, lora: LoraSettings) -> dict[str, torch.Tensor]:
    """CPU copies of the weights of the linear layers the adapter targets, by parameter name.

    peft matches a module list by the name's last part, and 'all-linear' as every linear layer but the output head.
    """
    import torch

    wanted = lora.target_modules()
    head = model.get_output_embeddings()
    return {
        f"{name}.weight": module.weight.detach().to("cpu", copy=True)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and module is not head
        and (wanted == "all-linear" or name.rsplit(".", 1)[-1] in wanted)
    }


class PissaBase:
    """The base weights PiSSA rewrites (kept on the CPU) and its initial adapter, in a scratch directory (a new
    temporary one unless given)."""

    def __init__(self, model: PreTrainedModel, lora: LoraSettings, scratch: Path | None = None) -> None:
        self.model = model
        self.weights = targeted_weights(model, lora)
        self.scratch = scratch or Path(tempfile.mkdtemp(prefix="advisor-pissa-"))
        self.initial = self.scratch / "initial"

    def initialised(self, peft_model: PeftModel) -> None:
        """Check that the kept weights are the ones PiSSA rewrote, and save the initial adapter (A0, B0)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        adapted = {f"{name}.weight" for name, m in self.model.named_modules() if isinstance(m, BaseTunerLayer)}
        if adapted != set(self.weights):
            raise RuntimeError(f"PiSSA adapted other layers than were kept: {sorted(adapted ^ set(self.weights))}")
        config = peft_model.peft_config["default"]
        init, config.init_lora_weights = config.init_lora_weights, True  # saved as plain LoRA, as peft's example does
        try:
            peft_model.save_pretrained(str(self.initial))
        finally:
            config.init_lora_weights = init

    def save_as_lora(self, peft_model: PeftModel, directory: Path) -> None:
        """Save the trained adapter as plain LoRA of twice the rank (A B - A0 B0): it loads on the untouched base."""
        peft_model.save_pretrained(str(directory), path_initial_model_for_weight_conversion=str(self.initial))

    @contextlib.contextmanager
    def as_lora(self, peft_model: PeftModel) -> Iterator[PeftModel]:
        """The trained adapter as plain LoRA on the restored base model, removed again on leaving (`peft_model` is
        unloaded: switching the plain adapter off gives the untouched base model)."""
        from peft import PeftModel

        directory = self.scratch / "lora"
        self.save_as_lora(peft_model, directory)
        peft_model.unload()
        self.restore()
        converted = PeftModel.from_pretrained(self.model, str(directory))
        try:
            yield converted
        finally:
            converted.unload()

    def restore(self) -> None:
        """Put the kept weights back into the base model (with the adapters unloaded), exactly."""
        import torch

        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, weight in self.weights.items():
                parameters[name].copy_(weight)

    def close(self) -> None:
        """Remove the scratch directory."""
        shutil.rmtree(self.scratch, ignore_errors=True)
