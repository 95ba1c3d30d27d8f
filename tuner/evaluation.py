"""Scoring a model, or an adapter on it, on the benchmarks through lm-eval; base-model scores are cached.

lm-eval's `HFLM` wraps the model already in memory, so a dequantised GGUF model and a peft adapter
attached during a trial are scored as they are, without saving or reloading anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.benchmarks import BENCHMARKS, EvalSettings, build_task, item_count, subset_indices
from tuner.errors import AdvisorError
from tuner.score_cache import ScoreCache
from tuner.study_state import StudyState

if TYPE_CHECKING:
    import optuna
    from lm_eval.api.model import LM
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuner.runtime import Runtime

Notify = Callable[[str], None]
"""Told what is being scored next, in a few words."""


@dataclass(frozen=True)
class TaskScore:
    """One benchmark's figures for one model."""

    score: float
    """The headline figure (BENCHMARKS[name].metric)."""
    metrics: dict[str, float]
    """Every metric lm-eval reported, e.g. acc and acc_norm, or exact match per answer extraction."""
    items: int
    seconds: float
    cached: bool = False

    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_second": round(self.items_per_second(), 3)}


def batch_size_for(runtime: Runtime) -> int:
    """Requests per forward pass: small on CPU, where padding costs the most, larger on a GPU."""
    return 32 if runtime.is_cuda else 8


def make_lm(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> LM:
    """lm-eval's HFLM around a model already loaded (a peft model included)."""
    from lm_eval.models.huggingface import HFLM

    class QuietHFLM(HFLM):
        """HFLM without its per-request progress bars (our callers show their own progress)."""

        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            return super().loglikelihood(requests, disable_tqdm=True)

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            return super().generate_until(requests, disable_tqdm=True)

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return QuietHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _metrics(results: dict[str, Any]) -> dict[str, float]:
    """lm-eval's figures for one task without its bookkeeping: 'acc,none' -> 'acc', stderr dropped."""
    metrics = {}
    for key, value in results.items():
        if "," in key and "_stderr" not in key and isinstance(value, int | float):
            metric, _, name = key.partition(",")
            metrics[metric if name == "none" else key] = float(value)
    return metrics


def score_task(lm: LM, name: str, settings: EvalSettings, data_dir: Path | None) -> TaskScore:
    """Score one benchmark with lm-eval's evaluator on the settings' subset of items."""
    from lm_eval.evaluator import evaluate

    benchmark = BENCHMARKS[name]
    task = build_task(name, data_dir, settings.prompt_format)
    indices = subset_indices(benchmark, settings.limit, settings.seed)
    chat = benchmark.role == "learning" and settings.prompt_format == "chat"
    started = time.perf_counter()
    results = evaluate(
        lm,
        {"tasks": {name: task}, "groups": {}},
        samples=None if indices is None else {name: indices},
        bootstrap_iters=0,
        log_samples=False,
        apply_chat_template=chat,
        confirm_run_unsafe_code=settings.allow_code_execution,
        verbosity="ERROR",
    )
    seconds = time.perf_counter() - started
    if results is None or name not in results.get("results", {}):
        raise AdvisorError(f"lm-eval returned no result for {name}")
    metrics = _metrics(results["results"][name])
    if benchmark.metric not in metrics:
        raise AdvisorError(f"lm-eval reported no {benchmark.metric} for {name} (got {', '.join(metrics)})")
    return TaskScore(metrics[benchmark.metric], metrics, item_count(benchmark, settings.limit), round(seconds, 3))


def score_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    settings: EvalSettings,
    data_dir: Path | None,
    runtime: Runtime,
    *,
    identity: str | None = None,
    cache: ScoreCache | None = None,
    notify: Notify | None = None,
) -> dict[str, TaskScore]:
    """Score `model` on each benchmark of `settings`; with an identity and a cache, scores found there are reused."""
    import torch

    source = "mirror" if data_dir is not None else "hub"
    scores: dict[str, TaskScore] = {}
    lm: LM | None = None
    was_training = model.training
    model.eval()
    try:
        for name in settings.tasks:
            key = settings.cache_key(name, identity, source) if identity is not None else None
            stored = cache.get(key) if cache is not None and key is not None else None
            if stored is not None:
                scores[name] = TaskScore(**{**stored, "cached": True})
                continue
            if notify is not None:
                items = item_count(BENCHMARKS[name], settings.limit)
                notify(f"scoring {BENCHMARKS[name].title} ({items} items)")
            lm = lm or make_lm(model, tokenizer, batch_size_for(runtime))
            with torch.no_grad():
                scores[name] = score_task(lm, name, settings, data_dir)
            if cache is not None and key is not None:
                cache.put(key, {k: v for k, v in asdict(scores[name]).items() if k != "cached"})
    finally:
        model.train(was_training)
    return scores


class TrialScorer:
    """Scores each trial that survives pruning on learning and forgetting, on subsets sized to its time budget.

    The first time it runs it measures each benchmark's cost per item on the base model and picks the largest
    subset that keeps scoring within EVAL_SHARE of a trial's training time (or takes a fixed size); the plan,
    and the base model's scores on it, are kept in the study so a resumed study scores the same items.
    """

    def __init__(
        self,
        study: optuna.Study,
        tokenizer: PreTrainedTokenizerBase,
        data_dir: Path | None,
        runtime: Runtime,
        *,
        identity: str,
        benchmarks: tuple[str, ...],
        seed: int,
        allow_code_execution: bool,
        fixed_items: int | None = None,
        notify: Notify | None = None,
    ) -> None:
        self.study = study
        self.tokenizer = tokenizer
        self.data_dir = data_dir
        self.runtime = runtime
        self.identity = identity
        self.benchmarks = benchmarks
        self.seed = seed
        self.allow_code_execution = allow_code_execution
        self.fixed_items = fixed_items
        self.notify = notify or (lambda message: None)
        self.cache = ScoreCache()

    def _settings(self, limit: int) -> EvalSettings:
        return EvalSettings(
            tasks=self.benchmarks, limit=limit, seed=self.seed, allow_code_execution=self.allow_code_execution
        )

    def plan(self, base_model: PreTrainedModel, train_seconds: float) -> EvalSettings | None:
        """The study's scoring settings, decided once and stored; None when scoring is off."""
        state = StudyState(self.study)
        stored = state.score_plan
        if stored is None:
            stored = self._decide(base_model, train_seconds)
            state.score_plan = stored
        return self._settings(stored["limit"]) if stored["limit"] else None

    def _decide(self, base_model: PreTrainedModel, train_seconds: float) -> dict[str, Any]:
        from tuner.benchmarks import CALIBRATION_ITEMS, EVAL_SHARE, MIN_STUDY_ITEMS, items_within_share

        if self.fixed_items is not None:
            return {"limit": self.fixed_items, "reason": "fixed by --score-items"}
        self.notify("measuring the benchmarks' cost per item on the base model")
        calibration = score_model(
            base_model,
            self.tokenizer,
            self._settings(CALIBRATION_ITEMS),
            self.data_dir,
            self.runtime,
            identity=self.identity,
            cache=self.cache,
        )
        per_item = {name: score.seconds / score.items for name, score in calibration.items()}
        limit = items_within_share(train_seconds, per_item)
        plan: dict[str, Any] = {
            "limit": limit,
            "seconds_per_item": {name: round(seconds, 4) for name, seconds in per_item.items()},
            "train_seconds": round(train_seconds, 2),
            "share": EVAL_SHARE,
        }
        if limit < MIN_STUDY_ITEMS:
            plan["limit"] = 0
            plan["reason"] = (
                f"trials train for {train_seconds:.0f} s; {EVAL_SHARE:.0%} of that scores only {limit} items per "
                f"benchmark (fewer than {MIN_STUDY_ITEMS}): raise --trial-tokens or set --score-items"
            )
            self.notify(f"scoring left out: {plan['reason']}")
        else:
            plan["reason"] = f"{limit} items per benchmark keep scoring within {EVAL_SHARE:.0%} of a trial"
        return plan

    def __call__(self, adapted: PeftModel, train_seconds: float) -> dict[str, TaskScore] | None:
        """Score the adapter (and, once, the base model with the adapter switched off); None when scoring is off."""
        with adapted.disable_adapter():
            settings = self.plan(adapted, train_seconds)
            if settings is None:
                return None
            state = StudyState(self.study)
            if state.base_scores is None:
                self.notify("scoring the base model on the study's benchmark items")
                base = score_model(
                    adapted,
                    self.tokenizer,
                    settings,
                    self.data_dir,
                    self.runtime,
                    identity=self.identity,
                    cache=self.cache,
                    notify=self.notify,
                )
                state.base_scores = {name: score.as_dict() for name, score in base.items()}
        return score_model(adapted, self.tokenizer, settings, self.data_dir, self.runtime, notify=self.notify)
