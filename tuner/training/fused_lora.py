"""LoRA's forward in one matrix product's pass: the base layer's output, plus scaling x (x A^T) B^T added by one
fused multiply-add (torch.addmm_), instead of peft's three passes over the output (B's product, the scaling,
the sum).

The adapter's side path holds little arithmetic but writes a whole output-sized tensor three times over, forward
and backward, which on a CPU costs far more than the arithmetic (bench/trial_throughput.py times the steps). Here
the scaling is applied inside the product (and in the backward pass to the rank-sized gradient), and the sum is
written into the base output in place (a frozen layer's backward pass never needs its output).

Installed per module, for the plain case only: an nn.Linear base layer, one active vanilla adapter (no DoRA or
other variant), all weights of one dtype. Anything else, at any call (adapters disabled or merged, extra
arguments), goes to peft's own forward; peft's unload() drops the override with the module.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def fuse_lora_forwards(model: torch.nn.Module) -> int:
    """Installs the fused forward on every plain LoRA linear layer of `model`; returns how many."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if type(module) is not LoraLinear or len(module.active_adapters) != 1:
            continue
        adapter = module.active_adapters[0]
        base = module.base_layer
        if adapter in module.lora_variant or adapter not in module.lora_A or type(base) is not torch.nn.Linear:
            continue
        down, up = module.lora_A[adapter], module.lora_B[adapter]
        if down.bias is not None or up.bias is not None or base.weight.dtype != down.weight.dtype:
            continue
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    return fused


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    import torch

    if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
        return type(self).forward(self, x, *args, **kwargs)
    adapter = self.active_adapters[0]
    down = self.lora_A[adapter].weight
    up = self.lora_B[adapter].weight
    base = self.base_layer
    flat = x.reshape(-1, x.shape[-1])
    result = torch.nn.functional.linear(flat, base.weight, base.bias)
    reduced = torch.nn.functional.linear(self.lora_dropout[adapter](flat).to(down.dtype), down)
    if result.dtype != reduced.dtype:  # under autocast: the base's product is in the lower precision
        reduced = reduced.to(result.dtype)
        up = up.to(result.dtype)
    result.addmm_(reduced, up.t(), alpha=self.scaling[adapter])
    return result.view(*x.shape[:-1], result.shape[-1])
