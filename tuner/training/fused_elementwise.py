"""RMSNorm and rotary embedding for training steps in fewer passes over the activations.

transformers' RMSNorm (Llama's, and the models that copy it: Qwen2, Mistral, SmolLM...) is six elementwise
operations, each a pass over the hidden states that autograd then replays backward. Here the forward is one
reduction and two passes, and the backward one reduction and three passes, from the saved input and the per-row
reciprocal root. A CPU step is largely such passes over memory (bench/trial_throughput.py times the steps).

The rotary embedding (x cos + rotate_half(x) sin, for the queries and the keys) negates and concatenates a copy
of each before its three passes; here it is one product and two in-place multiply-adds on the halves, forward and
backward.

Both are installed for the length of a run (`fused_elementwise`), and only where the model computes exactly that
(checked at install: Gemma's norm, which scales by 1 + weight, keeps its own). They serve training steps in
float32 only: with gradients off (held-out losses, scoring, generation), in other dtypes (bf16, which the norm's
own forward upcasts) and inside torch.compile's graphs (training.compilation, where inductor fuses them itself) the
model's own code runs, so nothing measured changes.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


ROTARY_FUNCTION = "apply_rotary_pos_emb"
"""The name transformers' modeling modules give their rotary embedding (a module-level function)."""


@contextlib.contextmanager
def fused_elementwise(model: torch.nn.Module) -> Iterator[tuple[int, bool]]:
    """Within this block `model` trains through the fused norms and rotary embedding where it has them; yields how
    many norms, and whether the rotary embedding, were fused."""
    with fused_norms(model) as norms, fused_rotary(model) as rotary:
        yield norms, rotary


@contextlib.contextmanager
def fused_norms(model: torch.nn.Module) -> Iterator[int]:
    """Within this block `model`'s plain RMSNorms train through the fused step; yields how many."""
    installed = [module for module in model.modules() if _is_plain_rms_norm(module)]
    for module in installed:
        module.forward = types.MethodType(_fused_forward, module)
    try:
        yield len(installed)
    finally:
        for module in installed:
            vars(module).pop("forward", None)


@contextlib.contextmanager
def fused_rotary(model: torch.nn.Module) -> Iterator[bool]:
    """Within this block the rotary embedding of `model`'s modeling module (transformers' `apply_rotary_pos_emb`)
    trains through the fused one, where that function computes the standard rotation; yields whether it does.
    The function is the module's, so any model of the same kind in this process gets it meanwhile (the same values,
    to float tolerance)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    module = sys.modules.get(type(base).__module__)
    own = getattr(module, ROTARY_FUNCTION, None)
    if own is None or getattr(own, "_fused_from", None) is not None or not _is_standard_rotary(own):
        yield False
        return

    setattr(module, ROTARY_FUNCTION, _fused_rotary_function(own))
    try:
        yield True
    finally:
        setattr(module, ROTARY_FUNCTION, own)


@functools.cache
def _fused_rotary_function(own: Any) -> Any:
    """The fused stand-in for a modeling module's rotary function `own`: one object per function, so that compiled
    layers' guards on it hold from one run to the next."""

    def apply(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not _fusable(q, k, cos, sin):
            return own(q, k, cos, sin, *args, **kwargs)
        return rotate(q, cos, sin), rotate(k, cos, sin)

    apply._fused_from = own  # type: ignore[attr-defined]
    return apply


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x cos + rotate_half(x) sin for x [batch, heads, length, dim] and cos, sin [batch, length, dim], with the
    fused backward."""
    return _rotary_function().apply(x, cos.unsqueeze(1), sin.unsqueeze(1))


def _is_standard_rotary(function: Any) -> bool:
    """Whether `function(q, k, cos, sin)` computes the standard rotation (checked on random values)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 3, 8, generator=generator), torch.randn(1, 1, 3, 8, generator=generator)
    cos, sin = torch.randn(1, 3, 8, generator=generator), torch.randn(1, 3, 8, generator=generator)
    try:
        with torch.no_grad():
            expected = function(q, k, cos, sin)
    except (TypeError, ValueError, RuntimeError, IndexError):  # another signature or layout: not this function
        return False
    if not isinstance(expected, tuple) or len(expected) != 2:
        return False
    ours = (rotate(q, cos, sin), rotate(k, cos, sin))
    return all(
        isinstance(theirs, torch.Tensor) and theirs.shape == mine.shape and torch.allclose(theirs, mine, atol=1e-5)
        for theirs, mine in zip(expected, ours, strict=True)
    )


def _fusable(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> bool:
    """A float32 training step with the whole head dimension rotated (not partial rotary) by constant angles."""
    return (
        _float32_training_step(q, k, cos, sin)
        and not (cos.requires_grad or sin.requires_grad)
        and q.dim() == 4
        and cos.dim() == 3
        and q.shape[-1] == k.shape[-1] == cos.shape[-1] == sin.shape[-1]
        and q.shape[-1] % 2 == 0
    )


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """weight * hidden / sqrt(mean(hidden^2) + eps) over the last dimension, with the fused backward."""
    return _rms_norm_function().apply(hidden, weight, eps)


def _is_plain_rms_norm(module: torch.nn.Module) -> bool:
    """Whether `module` is an RMSNorm whose own forward is weight * x / sqrt(mean(x^2) + eps), on its weights."""
    import torch

    if not type(module).__name__.endswith("RMSNorm") or "forward" in vars(module):
        return False
    weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
    if not isinstance(weight, torch.nn.Parameter) or weight.dim() != 1 or not isinstance(eps, float):
        return False
    if weight.dtype != torch.float32:
        return False
    probe = torch.randn(2, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight.device)
    with torch.no_grad():
        return torch.allclose(module(probe), rms_norm(probe, weight, eps), rtol=1e-4, atol=1e-5)


def _fused_forward(self: Any, hidden: torch.Tensor) -> torch.Tensor:
    if not _float32_training_step(hidden, self.weight):
        return type(self).forward(self, hidden)
    return rms_norm(hidden, self.weight, self.variance_epsilon)


def _float32_training_step(*tensors: torch.Tensor) -> bool:
    """Whether the fused ops serve this call: gradients on, outside torch.compile's graphs, all `tensors` float32."""
    import torch

    return (
        torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and all(tensor.dtype == torch.float32 for tensor in tensors)
    )


@functools.cache
def _rms_norm_function() -> Any:
    import torch

    class _RmsNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
            flat = hidden.reshape(-1, hidden.shape[-1])
            root = torch.linalg.vector_norm(flat, dim=-1, keepdim=True)
            reciprocal = torch.rsqrt(root.square_().div_(flat.shape[-1]).add_(eps))
            ctx.save_for_backward(flat, weight, reciprocal)
            ctx.shape = hidden.shape
            return torch.mul(flat, reciprocal).mul_(weight).view(hidden.shape)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
            # With n = x r (r the reciprocal root) and y = w n: dx = r (g w - n mean(g w n)).
            flat, weight, reciprocal = ctx.saved_tensors
            grad = grad.reshape(flat.shape)
            grad_weight = (grad * flat * reciprocal).sum(0) if ctx.needs_input_grad[1] else None
            scaled = grad * weight
            projection = torch.linalg.vecdot(scaled, flat).unsqueeze(-1).mul_(reciprocal.pow(3)).div_(flat.shape[-1])
            grad_hidden = scaled.mul_(reciprocal).addcmul_(flat, projection, value=-1).view(ctx.shape)
            return grad_hidden, grad_weight, None

    return _RmsNorm


@functools.cache
def _rotary_function() -> Any:
    import torch

    class _Rotary(torch.autograd.Function):
        # out = x cos + rotate_half(x) sin, with rotate_half(x) = [-x2, x1]: out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2.
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            half = x.shape[-1] // 2
            out = x * cos
            out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
            out[..., half:].addcmul_(x[..., :half], sin[..., half:])
            ctx.save_for_backward(cos, sin)
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
            # The transpose: dx1 = g1 c1 + g2 s2, dx2 = g2 c2 - g1 s1.
            cos, sin = ctx.saved_tensors
            half = grad.shape[-1] // 2
            grad_x = grad * cos
            grad_x[..., :half].addcmul_(grad[..., half:], sin[..., half:])
            grad_x[..., half:].addcmul_(grad[..., :half], sin[..., :half], value=-1)
            return grad_x, None, None

    return _Rotary
