"""torch.compile of the decoder layers, where a run is long enough to repay the compiling.

A compiled layer fuses the elementwise work around the matrix products (the norms, rotary embedding, SwiGLU, the
residual sums) into a few kernels, forward and backward. Attention stays eager (tuner.training.attention's per-example
attention changes shape with every batch's examples, which would recompile each step), so each layer compiles to
two graphs, shared by all layers (same code, parameters as inputs).

Compiling costs a warm-up once per process (inductor's kernels are cached on disk between processes, which cuts
it) and saves a share of every later step. So a run times its first eager steps, then compiles only if the steps
left would repay the warm-up with a margin (CompileCost.repays); ADVISOR_COMPILE=on compiles from the first
step, =off never (auto: decide). Only training steps run compiled: with gradients off (held-out losses,
benchmark scoring, generation with its changing shapes) the layers run eagerly, so nothing recompiles for them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    import torch

COMPILE_VARIABLE = "ADVISOR_COMPILE"
MODES = ("auto", "on", "off")
TIMED_STEPS = 2
"""Eager steps before deciding: the first warms up (allocator, caches), the second's time is the one that counts."""


@dataclass(frozen=True)
class CompileCost:
    """What compiling the decoder layers costs once and saves per step, on one kind of device."""

    warmup_seconds: float
    """The first compiled step's extra time, on a cold inductor cache."""
    step_saving: float
    """The share of an eager step's time a compiled step saves."""
    margin: float = 2.0
    """How many times over the saving must repay the warm-up (the saving varies with shapes and machines)."""
    measured: bool = True

    def repays(self, remaining_steps: int, step_seconds: float) -> bool:
        """Whether `remaining_steps` steps of `step_seconds` each repay compiling."""
        return remaining_steps * step_seconds * self.step_saving >= self.margin * self.warmup_seconds

    def break_even_seconds(self) -> float:
        """Eager training time left from which compiling pays (with the margin)."""
        return self.margin * self.warmup_seconds / self.step_saving


COSTS = {
    # fitted by bench/trial_throughput.py --anchors compiled (cold cache; the largest warm-up, the smallest saving)
    "cpu": CompileCost(warmup_seconds=44.0, step_saving=0.06),
    # not fitted on a GPU yet (measured=False): what inductor usually gives a small model's training step there
    "cuda": CompileCost(warmup_seconds=60.0, step_saving=0.15, measured=False),
}


def compile_mode(environ: Mapping[str, str] = os.environ) -> str:
    """ADVISOR_COMPILE's value (auto when unset); anything else is an AdvisorError."""
    mode = environ.get(COMPILE_VARIABLE, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise AdvisorError(f"{COMPILE_VARIABLE}={environ[COMPILE_VARIABLE]!r} is not one of {', '.join(MODES)}")
    return mode


def compiler_missing(device_type: str) -> str | None:
    """Why torch.compile cannot build kernels for this device (no C++ compiler or Python headers on CPU, no triton
    on CUDA), or None."""
    import importlib.util

    if device_type == "cpu":
        import sysconfig

        compiler = os.environ.get("CXX", "g++")
        if not shutil.which(compiler):
            return f"no C++ compiler ({compiler}) for inductor's CPU kernels"
        headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
        return None if headers.is_file() else f"no Python headers ({headers}) for inductor's CPU kernels"
    if device_type == "cuda":
        return None if importlib.util.find_spec("triton") else "triton is not installed"
    return f"torch.compile is not set up for {device_type}"


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated decoder layers: modules of the classes transformers keeps whole (_no_split_modules)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [module for module in base.modules() if type(module).__name__ in names]


class LayerCompiler:
    """Compiles a model's decoder layers in place when (or if) its run repays it, for training steps only.

    `step_done` is called after each optimizer step; it returns a line saying what it decided, once. `close`
    puts the layers' own forwards back.
    """

    def __init__(self, model: torch.nn.Module, device_type: str, mode: str = "auto") -> None:
        self.layers = decoder_layers(model)
        self.cost = COSTS.get(device_type)
        self.compiled = False
        missing = compiler_missing(device_type)
        self.decided = mode == "off" or not self.layers or self.cost is None or missing is not None
        if mode == "on":
            if missing is not None:
                raise AdvisorError(f"{COMPILE_VARIABLE}=on but {missing}")
            if not self.layers:
                raise AdvisorError(f"{COMPILE_VARIABLE}=on but the model has no decoder layers to compile")
            self._compile()
            self.decided = True

    def step_done(self, step: int, step_seconds: float, total_steps: int) -> str | None:
        """After optimizer step `step` (counted from 1 in this session) took `step_seconds` of `total_steps`."""
        if self.decided or step < TIMED_STEPS:
            return None
        self.decided = True
        assert self.cost is not None
        remaining = total_steps - step
        if not self.cost.repays(remaining, step_seconds):
            return None
        self._compile()
        return (
            f"compiling the {len(self.layers)} decoder layers: {remaining} steps left x {step_seconds:.1f} s repay "
            f"the ~{self.cost.warmup_seconds:.0f} s warm-up at {self.cost.step_saving:.0%} a step"
        )

    def _compile(self) -> None:
        import torch

        from tuner.training.attention import register

        register()  # the per-example attention, excluded from the graphs
        for layer in self.layers:
            layer.forward = _training_only(layer, torch.compile(type(layer).forward.__get__(layer), dynamic=False))
        self.compiled = True

    def close(self) -> None:
        if self.compiled:
            for layer in self.layers:
                if "forward" in vars(layer):
                    del layer.forward
            self.compiled = False


def _training_only(layer: torch.nn.Module, compiled: Any) -> Any:
    """The layer's forward: `compiled` while training with gradients, its own otherwise."""
    import torch

    own = type(layer).forward.__get__(layer)

    def forward(*args: Any, **kwargs: Any) -> Any:
        if layer.training and torch.is_grad_enabled():
            return compiled(*args, **kwargs)
        return own(*args, **kwargs)

    return forward


@contextlib.contextmanager
def layer_compiler(model: torch.nn.Module, device_type: str, mode: str | None = None) -> Iterator[LayerCompiler]:
    """A LayerCompiler for the length of a run (mode: ADVISOR_COMPILE's when None); the layers are eager after."""
    compiler = LayerCompiler(model, device_type, compile_mode() if mode is None else mode)
    try:
        yield compiler
    finally:
        compiler.close()
