"""The search space narrowed to a memory budget by the estimate, with the check each trial passes, and the full
run's refusal under a budget (pure: the study applies them, tuner.study.setup)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tuner.errors import AdvisorError
from tuner.memory import estimate as memory
from tuner.memory.report import feasible_text, memory_report, weights_refusal
from tuner.memory.sizes import format_size
from tuner.settings import LoraSettings, RunSettings, StudySettings
from tuner.study.space import SearchSpace

Feasibility = Callable[..., "str | None"]
"""Why an adapter configuration would not fit the memory budget, or None if it fits (with checkpointing, if needed):
called with its LoraSettings and the base weights its trial drew (its parameters' 'quantize': 'none' or 'nf4' under
--quantize search; None, the study's, otherwise)."""
Checkpointing = Callable[..., bool]
"""Whether an adapter configuration fits the memory budget only with gradient checkpointing (called as
Feasibility is)."""


def study_quantize(settings: StudySettings, space: SearchSpace, device: str) -> str | None:
    """The trials' base weights: 'nf4' (QLoRA) where asked, or where no configuration fits the memory budget in
    16 bits but one does in 4; 'search' (each trial draws) where asked and configurations of each fit beside the
    other base's weights (both are held); else None (16-bit)."""
    if settings.quantize in ("nf4", "none"):
        return "nf4" if settings.quantize == "nf4" else None
    if settings.memory_budget is None:
        return settings.quantize  # 'search', or None
    shape = memory.model_shape(settings.model)
    setup = memory.TrainSetup(device=device, batch=settings.budget.batch_size, seq_len=settings.budget.seq_len)

    def any_fits(quantized: bool, both: bool = False) -> bool:  # with checkpointing where needed, as trials then run
        least = replace(setup, quantized=quantized, gradient_checkpointing=True)
        held = _other_base(shape, setup, both)(quantized)
        return any(
            memory.estimate(shape, replace(least, rank=r, targets=t)).total + held <= settings.memory_budget
            for r in space.ranks
            for t in space.targets
        )

    if settings.quantize == "search" and any_fits(False, both=True) and any_fits(True, both=True):
        return "search"
    return "nf4" if not any_fits(False) and any_fits(True) else None  # else one kind, as without --quantize


def _other_base(shape: memory.ModelShape, setup: memory.TrainSetup, both: bool) -> Callable[[bool], int]:
    """The bytes of the base a trial does not train on, held beside it under --quantize search (`both`): the 4-bit
    weights beside a 16-bit trial, the 16-bit ones beside a QLoRA trial; 0 otherwise."""
    if not both:
        return lambda quantized: 0
    frozen = {q: memory.estimate(shape, replace(setup, quantized=q)).weights for q in (False, True)}
    return lambda quantized: frozen[not quantized]


def memory_bounds(
    settings: StudySettings, space: SearchSpace | None = None, quantize: str | None = None
) -> tuple[SearchSpace, Feasibility | None, Checkpointing | None]:
    """The search space narrowed to what the memory estimate says fits the budget (on 4-bit weights where `quantize`
    is 'nf4'; under 'search' both bases are held and each trial counts the other's weights too), the check each
    trial passes, and which configurations need gradient checkpointing to fit.

    A configuration fits without checkpointing where it can, else with it (each layer's activations recomputed in
    the backward pass: its trial runs so). Ranks that fit with some target set and target sets that fit at the
    smallest rank stay (in either precision under 'search'); a drawn pair that still does not fit is pruned before
    it runs. Nothing fitting is an error that says what would.
    """
    from tuner.training.runtime import pick_runtime

    space = space or SearchSpace()
    if quantize == "search":
        space = replace(space, quantize=("none", "nf4"))
    if settings.memory_budget is None:
        return space, None, None
    device = pick_runtime().device.type  # where the trials will run
    shape = memory.model_shape(settings.model)
    trial_setup = memory.TrainSetup(
        device=device, batch=settings.budget.batch_size, seq_len=settings.budget.seq_len, quantized=quantize == "nf4"
    )
    limit = settings.memory_budget
    held = _other_base(shape, trial_setup, quantize == "search")
    default = quantize == "nf4"

    def total(lora: LoraSettings, checkpointing: bool, quantized: bool) -> int:
        setup = replace(trial_setup, rank=lora.rank, targets=lora.targets, variant=lora.variant, quantized=quantized)
        return memory.estimate(shape, replace(setup, gradient_checkpointing=checkpointing)).total + held(quantized)

    def feasible(lora: LoraSettings, drawn: object = None) -> str | None:
        quantized = default if drawn is None else drawn == "nf4"
        least = total(lora, True, quantized)
        if least <= limit:
            return None
        over = format_size(limit)
        what = f"QLoRA r={lora.rank}" if quantized and quantize == "search" else f"r={lora.rank}"
        return f"estimated {format_size(least)} for {what} on {lora.targets} with checkpointing, over {over}"

    def checkpointing(lora: LoraSettings, drawn: object = None) -> bool:
        return total(lora, False, default if drawn is None else drawn == "nf4") > limit

    kinds = ("none", "nf4") if quantize == "search" else (None,)
    fitting = [
        (r, t)
        for r in space.ranks
        for t in space.targets
        if any(feasible(LoraSettings(r, 2 * r, t), drawn) is None for drawn in kinds)
    ]
    if not fitting:
        refusal = weights_refusal(shape, trial_setup, limit)
        if refusal:
            raise AdvisorError(refusal)
        smallest = replace(trial_setup, rank=min(space.ranks), targets="attention")
        report = memory_report(settings.model, shape, smallest, limit)
        advice = feasible_text(report).replace("\n", ";")
        fits = format_size(limit)
        raise AdvisorError(f"no LoRA configuration fits {fits} at these trial settings. {advice}")
    ranks = tuple(sorted({r for r, _ in fitting}))
    targets = tuple(t for t in space.targets if t in {target for _, target in fitting})
    return replace(space, ranks=ranks, targets=targets), feasible, checkpointing


def run_memory_refusal(
    settings: RunSettings, budget: int, device: str, gradient_checkpointing: bool = False
) -> str | None:
    """Why the full run's step would not fit `budget` by the estimate (what it needs, and what LoRA needs instead
    for full fine-tuning); None when it fits."""
    recipe = settings.recipe
    shape = memory.model_shape(settings.model)
    targets = "full" if recipe.is_full else recipe.lora.targets
    setup = memory.TrainSetup(
        device=device,
        targets=targets,
        rank=recipe.lora.rank,
        batch=recipe.batch_size,
        seq_len=recipe.seq_len,
        variant="lora" if recipe.is_full else recipe.lora.variant,
        quantized=recipe.quantize is not None,
        gradient_checkpointing=gradient_checkpointing,
    )
    total = memory.estimate(shape, setup).total
    if total <= budget:
        return None
    what = "full fine-tuning" if recipe.is_full else f"{'QLoRA' if setup.quantized else 'LoRA'} r={recipe.lora.rank}"
    what += "" if recipe.is_full else f" on {targets}"
    text = f"{what} at {recipe.batch_size} x {recipe.seq_len} tokens needs an estimated {format_size(total)}"
    text += f" on {device}, over the budget of {format_size(budget)}"
    if recipe.is_full:
        lora = memory.estimate(shape, replace(setup, targets="all", rank=16)).total
        text += f"; LoRA r=16 on all linear layers needs {format_size(lora)}"
    return text
