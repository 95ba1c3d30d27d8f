"""The search space over learning rate, rank, alpha, target modules, LoRA variant and, when asked, the base weights'
precision (pure: optuna is only called)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tuner.defaults import QUANTIZE_MODES, TARGET_SETS, VARIANTS
from tuner.paper import FIXED_ALPHA, paper_learning_rate
from tuner.settings import LoraSettings

if TYPE_CHECKING:
    import optuna


ALPHA_RULES = ("fixed", "2r", "search")
"""How alpha is set: one alpha at every rank (the default), alpha = 2r (the paper's), or searched as a multiple of r."""
SEARCHED_ALPHA_MULTIPLES = (0.5, 1.0, 2.0, 4.0)


def alpha_choice(text: str) -> dict[str, object]:
    """SearchSpace fields for an --alpha value: a number (fixed), 'Nr' (N x rank, '2r' is the paper's) or 'search'."""
    value = text.strip().lower()
    if value == "search":
        return {"alphas": None, "alpha_multiples": SEARCHED_ALPHA_MULTIPLES}
    try:
        if value.endswith("r"):
            multiple = float(value[:-1] or 1)
            if multiple > 0:
                return {"alphas": None, "alpha_multiples": (multiple,)}
        elif float(value) > 0:
            return {"alphas": (float(value),), "alpha_multiples": (2.0,)}
    except ValueError:
        pass
    raise ValueError(
        f"--alpha takes a positive number (fixed alpha), a multiple of the rank such as 2r, or 'search'; got {text!r}"
    )


@dataclass(frozen=True)
class SearchSpace:
    """Ranges that Optuna samples from."""

    lr_low: float = 2e-5
    """Lowest learning rate (log scale); the paper's LoRA rates run from 5e-5 to 2e-4."""
    lr_high: float = 2e-3
    """Highest learning rate; small models tolerate higher rates than the paper's 7B."""
    ranks: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    """Candidate ranks (the paper compares 16 and 256)."""
    alphas: tuple[float, ...] | None = (FIXED_ALPHA,)
    """Alpha fixed whatever the rank, so the best rate barely moves with the rank and the two are searched nearly
    independently (LoRA Without Regret's alpha = 32; a preset's own alpha joins it); None: alpha is a multiple
    of the rank (alpha_multiples)."""
    alpha_multiples: tuple[float, ...] = (2.0,)
    """alpha = multiple x rank when alphas is None; 2 is the paper's convention."""
    targets: tuple[str, ...] = TARGET_SETS
    """Target module sets."""
    variants: tuple[str, ...] = ("lora",)
    """LoRA variants to choose between (plain LoRA, rsLoRA, DoRA, PiSSA, LoRA+)."""
    variant_rates: tuple[tuple[str, float, float], ...] = ()
    """(variant, lowest, highest rate) for variants with a rate range of their own (each its range test's);
    the others draw from lr_low to lr_high."""
    quantize: tuple[str, ...] = ()
    """The base weights each trial draws ('none': 16-bit, 'nf4': QLoRA) under --quantize search; empty: one kind
    for every trial (the study's), not a parameter."""

    def __post_init__(self) -> None:
        if not 0 < self.lr_low < self.lr_high:
            raise ValueError(f"need 0 < lr_low < lr_high, got {self.lr_low} and {self.lr_high}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"ranks must be positive, got {self.ranks}")
        if self.alphas is not None and (not self.alphas or min(self.alphas) <= 0):
            raise ValueError(f"fixed alphas must be positive, got {self.alphas}")
        if not self.alpha_multiples or min(self.alpha_multiples) <= 0:
            raise ValueError(f"alpha multiples must be positive, got {self.alpha_multiples}")
        unknown = set(self.targets) - set(TARGET_SETS)
        if not self.targets or unknown:
            raise ValueError(f"targets must be drawn from {TARGET_SETS}, got {self.targets}")
        unknown_variants = set(self.variants) - set(VARIANTS)
        if not self.variants or unknown_variants:
            named = ", ".join(sorted(unknown_variants)) or "(none given)"
            raise ValueError(f"unknown LoRA variant {named}: choose from {', '.join(VARIANTS)}")
        if set(self.quantize) - set(QUANTIZE_MODES):
            raise ValueError(f"searched base weights must be drawn from {QUANTIZE_MODES}, got {self.quantize}")
        for variant, low, high in self.variant_rates:
            if variant not in VARIANTS or not 0 < low < high:
                raise ValueError(f"a variant's rates need a known variant and 0 < low < high, got {variant, low, high}")

    def rate_range(self, variant: str = "lora") -> tuple[float, float]:
        """The learning rates a variant's trials draw from."""
        own = {name: (low, high) for name, low, high in self.variant_rates}
        return own.get(variant, (self.lr_low, self.lr_high))

    def suggest(self, trial: optuna.Trial) -> dict[str, object]:
        """Draw one configuration through Optuna's suggest_* calls (alpha is always among the parameters).

        With variants searched, the variant is drawn first and the rate from its own range."""
        variant = trial.suggest_categorical("variant", list(self.variants)) if self.variants != ("lora",) else "lora"
        params: dict[str, object] = {
            "learning_rate": trial.suggest_float("learning_rate", *self.rate_range(str(variant)), log=True),
            "rank": trial.suggest_categorical("rank", list(self.ranks)),
        }
        if self.alphas is not None:
            params["alpha"] = trial.suggest_categorical("alpha", list(self.alphas))
        else:
            params["alpha_multiple"] = trial.suggest_categorical("alpha_multiple", list(self.alpha_multiples))
        params["targets"] = trial.suggest_categorical("targets", list(self.targets))
        if self.variants != ("lora",):
            params["variant"] = variant
        if self.quantize:
            params["quantize"] = trial.suggest_categorical("quantize", list(self.quantize))
        return params

    def alpha_rule(self) -> str:
        """How alpha is set, in words."""
        if self.alphas is not None:
            fixed = " or ".join(f"{alpha:g}" for alpha in self.alphas)
            return f"alpha fixed at {fixed} whatever the rank (LoRA Without Regret)"
        if len(self.alpha_multiples) == 1:
            return f"alpha = {self.alpha_multiples[0]:g}r" + (
                " (Biderman et al. 2024)" if self.alpha_multiples[0] == 2 else ""
            )
        return f"alpha searched as {', '.join(f'{m:g}' for m in self.alpha_multiples)} x r"

    def with_rates(self, low: float, high: float, variant: str | None = None) -> SearchSpace:
        """This space with another learning-rate range (the range test's), for every variant or for one."""
        if variant is None:
            return replace(self, lr_low=low, lr_high=high)
        others = tuple(entry for entry in self.variant_rates if entry[0] != variant)
        return replace(self, variant_rates=(*others, (variant, low, high)))

    def including(self, params: dict[str, object]) -> SearchSpace:
        """This space widened to hold one configuration (a preset's values may lie outside the defaults)."""
        rate = float(params["learning_rate"])  # type: ignore[arg-type]
        variant = str(params.get("variant", "lora"))
        if variant in {name for name, _, _ in self.variant_rates}:
            low, high = self.rate_range(variant)
            space = self.with_rates(min(low, rate), max(high, rate), variant)
        else:
            space = replace(self, lr_low=min(self.lr_low, rate), lr_high=max(self.lr_high, rate))
        return space._including_choices(params)

    def _including_choices(self, params: dict[str, object]) -> SearchSpace:
        """This space widened to hold a configuration's rank, targets, variant and alpha."""
        wider = replace(
            self,
            ranks=tuple(sorted({*self.ranks, int(params["rank"])})),  # type: ignore[call-overload]
            targets=tuple(t for t in TARGET_SETS if t in {*self.targets, str(params["targets"])}),
            variants=tuple(v for v in VARIANTS if v in {*self.variants, str(params.get("variant", "lora"))}),
        )
        lora = lora_from_params(params)
        if self.alphas is not None:
            return replace(wider, alphas=tuple(sorted({*self.alphas, lora.alpha})))
        multiples = tuple(sorted({*self.alpha_multiples, lora.alpha / lora.rank}))
        return replace(wider, alpha_multiples=multiples)

    def fitting(self, params: dict[str, object]) -> dict[str, object]:
        """A configuration's parameters in this space's terms (alpha fixed or as a multiple of the rank)."""
        lora = lora_from_params(params)
        fitted = trial_params(lora, float(params["learning_rate"]), self)  # type: ignore[arg-type]
        if self.quantize:  # 16-bit unless the configuration says otherwise
            fitted["quantize"] = str(params.get("quantize", "none"))
        return fitted

    def paper_configurations(self, task: str) -> list[dict[str, object]]:
        """The paper's all-linear settings at r = 16 and r = 256 (alpha = 2r), as evidence and the fallback."""
        return [
            {
                "learning_rate": paper_learning_rate(task, rank),
                "rank": rank,
                "alpha_multiple": 2.0,  # alpha = 2r, as in Biderman et al. 2024
                "targets": "all",
            }
            for rank in (16, 256)
            if rank in self.ranks
        ]


def trial_params(lora: LoraSettings, learning_rate: float, space: SearchSpace | None = None) -> dict[str, object]:
    """A trial's parameters for an adapter and rate (the inverse of lora_from_params), in a space's terms.

    Alpha is fixed in a space that fixes it, else (and without a space) a multiple of the rank; the space must
    hold the result (SearchSpace.including).
    """
    params: dict[str, object] = {"learning_rate": learning_rate, "rank": lora.rank}
    if space is not None and space.alphas is not None:
        params["alpha"] = lora.alpha
    else:
        params["alpha_multiple"] = lora.alpha / lora.rank
    params["targets"] = lora.targets
    variant = lora.variant
    if variant != "lora" or (space is not None and space.variants != ("lora",)):
        params["variant"] = variant
    return params


def lora_from_params(params: dict[str, object]) -> LoraSettings:
    """The adapter settings a trial's parameters describe."""
    rank = int(params["rank"])  # type: ignore[arg-type]
    alpha = params["alpha"] if "alpha" in params else float(params["alpha_multiple"]) * rank  # type: ignore[arg-type]
    lora = LoraSettings(rank=rank, alpha=float(alpha), targets=str(params["targets"]))  # type: ignore[arg-type]
    variant = str(params.get("variant", "lora"))
    return replace(lora, variant=variant) if variant != "lora" else lora


def quantize_from_params(params: dict[str, object]) -> str | None:
    """The base weights a trial trained on where the study searched them: 'nf4' (QLoRA) or None (16-bit, and every
    trial of a study that did not search them)."""
    return "nf4" if params.get("quantize") == "nf4" else None
