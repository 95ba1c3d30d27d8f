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

from tuner.errors import AdvisorError
from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings, build_task, item_count, subset_indices
from tuner.scoring.cache import ScoreCache
from tuner.study.budget import format_duration
from tuner.study.state import StudyState

if TYPE_CHECKING:
    import optuna
    from lm_eval.api.model import LM
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuner.training.runtime import Runtime

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
    stderr: float | None = None
    """The headline figure's standard error as lm-eval reports it (None in scores cached before it was kept)."""
    item_scores: dict[str, float] | None = None
    """The headline metric per item, by the item's index in the benchmark (as text): two models scored on the
    same items are compared item by item (paired). None in scores cached before they were kept."""

    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def standard_error(self) -> float:
        """lm-eval's standard error, or the same formula over 0/1 item scores where it was not kept."""
        from tuner.scoring.benchmarks import score_stderr

        return self.stderr if self.stderr is not None else score_stderr(self.score, self.items)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TaskScore:
        """A score as as_dict wrote it (the derived items_per_second dropped)."""
        return cls(**{key: value for key, value in payload.items() if key != "items_per_second"})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stderr": self.standard_error(), "items_per_second": round(self.items_per_second(), 3)}


def batch_size_for(runtime: Runtime, generates: bool = False) -> int:
    """Requests per forward pass. On a CPU: 8 when scoring choices (compute-bound, where padding costs the most),
    32 when generating (each new token reads every weight whatever the batch, so a wider batch costs little more;
    bench/eval_throughput.py). On a GPU: 32."""
    if runtime.is_cuda:
        return 32
    return 32 if generates else 8


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
    """lm-eval's figures for one task without its bookkeeping: 'acc,none' -> 'acc', standard errors apart."""
    metrics = {}
    for key, value in results.items():
        if "," in key and "_stderr" not in key and isinstance(value, int | float):
            metric, _, name = key.partition(",")
            metrics[metric if name == "none" else key] = float(value)
    return metrics


def _stderr(results: dict[str, Any], metric: str) -> float | None:
    """lm-eval's standard error of a headline metric ('acc_norm' or 'exact_match,flexible-extract'), if it gave one."""
    name, _, extraction = metric.partition(",")
    value = results.get(f"{name}_stderr,{extraction or 'none'}")
    return float(value) if isinstance(value, int | float) else None


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
        bootstrap_iters=100,  # means (every headline metric here) get lm-eval's closed-form standard error
        log_samples=True,  # each item's figures, for paired comparisons
        apply_chat_template=chat,
        confirm_run_unsafe_code=settings.allow_code_execution,
        verbosity="ERROR",
    )
    seconds = time.perf_counter() - started
    if results is None or name not in results.get("results", {}):
        raise AdvisorError(f"lm-eval returned no result for {name}")
    figures = results["results"][name]
    metrics = _metrics(figures)
    if benchmark.metric not in metrics:
        raise AdvisorError(f"lm-eval reported no {benchmark.metric} for {name} (got {', '.join(metrics)})")
    items = item_count(benchmark, settings.limit)
    stderr = _stderr(figures, benchmark.metric)
    per_item = item_scores(results.get("samples", {}).get(name, []), benchmark.metric)
    return TaskScore(metrics[benchmark.metric], metrics, items, round(seconds, 3), stderr=stderr, item_scores=per_item)


def item_scores(samples: list[dict[str, Any]], metric: str) -> dict[str, float] | None:
    """The headline metric of each logged item ('exact_match,flexible-extract' reads the samples of that filter),
    by doc id; None when lm-eval logged none."""
    name, _, extraction = metric.partition(",")
    found = {
        str(sample["doc_id"]): float(sample[name])
        for sample in samples
        if sample.get("filter", "none") == (extraction or "none") and isinstance(sample.get(name), int | float)
    }
    return found or None


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
    lm_generates = False
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
            generates = BENCHMARKS[name].generates
            if lm is None or lm_generates != generates:
                lm, lm_generates = make_lm(model, tokenizer, batch_size_for(runtime, generates)), generates
            with torch.no_grad():
                scores[name] = score_task(lm, name, settings, data_dir)
            if cache is not None and key is not None:
                cache.put(key, {k: v for k, v in asdict(scores[name]).items() if k != "cached"})
    finally:
        model.train(was_training)
    return scores


class TrialScorer:
    """Scores a study's trials on learning and forgetting, on subsets priced before anything is timed.

    At the first completed trial it prices each benchmark's items from their `item_cost` and the trial's measured
    training speed (nothing is timed only to decide) and stores the plan in the study, so a resumed study scores
    the same items. Trials long enough to score MIN_STUDY_ITEMS items within EVAL_SHARE of their training are
    each scored (mode 'trials'); otherwise only the study's pick is, after the search, with the base model on the
    same items (mode 'pick', `score_pick`). A fixed size (`--score-items N`) scores every trial on N items.
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

    def plan(self, train_seconds: float, tokens_per_second: float) -> dict[str, Any]:
        """The study's scoring plan, decided once from a trial's training time and speed, and stored."""
        state = StudyState(self.study)
        stored = state.score_plan
        if stored is None:
            stored = self._decide(train_seconds, tokens_per_second)
            state.score_plan = stored
        return stored

    def _decide(self, train_seconds: float, tokens_per_second: float) -> dict[str, Any]:
        from tuner.scoring.benchmarks import EVAL_SHARE, MIN_STUDY_ITEMS, items_within_share, seconds_per_item

        per_item = seconds_per_item({name: BENCHMARKS[name].item_cost for name in self.benchmarks}, tokens_per_second)
        plan: dict[str, Any] = {
            "seconds_per_item": {name: round(seconds, 4) for name, seconds in per_item.items()},
            "train_seconds": round(train_seconds, 2),
            "tokens_per_second": round(tokens_per_second, 1),
            "share": EVAL_SHARE,
        }
        if self.fixed_items is not None:
            return {**plan, "mode": "trials", "limit": self.fixed_items, "reason": "fixed by --score-items"}
        limit = items_within_share(train_seconds, per_item)
        if limit >= MIN_STUDY_ITEMS:
            reason = f"{limit} items per benchmark keep scoring within {EVAL_SHARE:.0%} of a trial"
            return {**plan, "mode": "trials", "limit": limit, "reason": reason}
        reason = (
            f"trials train for {train_seconds:.0f} s, too short to score each one on {MIN_STUDY_ITEMS} items within "
            f"{EVAL_SHARE:.0%} of it: the pick is scored after the search, with the base model on the same items"
        )
        self.notify(reason)
        return {**plan, "mode": "pick", "limit": 0, "reason": reason}

    def scores_trials(self) -> bool:
        """Whether each trial is scored (the plan's mode is 'trials'); False before the plan is decided."""
        plan = StudyState(self.study).score_plan
        return bool(plan and plan.get("mode", "trials") == "trials" and plan.get("limit"))

    def _score_base(self, model: PreTrainedModel, settings: EvalSettings) -> dict[str, TaskScore]:
        """The base model's scores on the plan's items, scored once per study (and cached across studies)."""
        state = StudyState(self.study)
        if state.base_scores is None or state.base_scores_items not in (None, settings.limit):
            self.notify(f"scoring the base model on the study's benchmark items ({settings.limit} per benchmark)")
            base = score_model(
                model,
                self.tokenizer,
                settings,
                self.data_dir,
                self.runtime,
                identity=self.identity,
                cache=self.cache,
                notify=self.notify,
            )
            state.base_scores = {name: score.as_dict() for name, score in base.items()}
            state.base_scores_items = settings.limit
        return {name: TaskScore.from_dict(score) for name, score in (state.base_scores or {}).items()}

    def __call__(self, adapted: PeftModel, base: PreTrainedModel | None = None) -> dict[str, TaskScore] | None:
        """Score a trial's adapter (and, once, the base model: `base`, or the adapted one with the adapter switched
        off); None unless the plan scores each trial."""
        if not self.scores_trials():
            return None
        settings = self._settings(StudyState(self.study).score_plan["limit"])  # type: ignore[index]
        if base is not None:  # a QLoRA trial of --quantize search, measured against the 16-bit base
            self._score_base(base, settings)
        else:
            with adapted.disable_adapter():
                self._score_base(adapted, settings)
        return score_model(adapted, self.tokenizer, settings, self.data_dir, self.runtime, notify=self.notify)

    def score_pick(
        self,
        model: PreTrainedModel,
        adapter_dir: Path,
        trial: int,
        train_seconds: float,
        adapter_base: PreTrainedModel | None = None,
    ) -> dict[str, Any]:
        """Score the pick's adapter (on `adapter_base`, the 4-bit base it trained on under --quantize search, else on
        `model`) and the base model on items sized to PICK_SHARE of the study's training time, no more than a
        general mean to TARGET_GENERAL_STDERR needs; returns (and stores) {trial, items, seconds, scores}. The
        models are left as they were."""
        from peft import PeftModel

        from tuner.scoring.benchmarks import MAX_PICK_ITEMS, TARGET_GENERAL_STDERR, pick_items, scoring_seconds

        state = StudyState(self.study)
        plan = state.score_plan or {}
        per_item = plan.get("seconds_per_item") or {}
        stored = state.pick_scores
        items = stored["items"] if stored and stored.get("trial") == trial else pick_items(train_seconds, per_item)
        state.pick_scores = {"trial": trial, "items": items}  # the items are chosen once, before anything is scored
        estimate = scoring_seconds(items, per_item)
        target = f"a general mean to ± {TARGET_GENERAL_STDERR:g} at worst"
        why = target if items >= MAX_PICK_ITEMS else f"half the study's training time at most; {target} needs"
        self.notify(
            f"scoring the pick (trial {trial}) and the base model on {items} items per benchmark "
            f"(about {format_duration(estimate)}; {why}{'' if items >= MAX_PICK_ITEMS else f' {MAX_PICK_ITEMS}'})"
        )
        settings = self._settings(items)
        started = time.perf_counter()
        base = self._score_base(model, settings)
        measured = sum(score.seconds for score in base.values() if not score.cached)
        if measured > 0:  # the estimate refined by what the base model took on these items
            self.notify(f"scoring trial {trial}'s adapter (about {format_duration(measured)})")
        from tuner.models.quantize import is_quantized

        adapted = PeftModel.from_pretrained(adapter_base or model, str(adapter_dir))
        # Merged, it is scored at the base model's speed (generation pays no adapter per new token); not into 4-bit
        # weights, which would round the adapter and not give the base back.
        merged = not is_quantized(adapter_base or model)
        if merged:
            adapted.merge_adapter()
        try:
            scores = score_model(adapted, self.tokenizer, settings, self.data_dir, self.runtime, notify=self.notify)
        finally:
            if merged:
                adapted.unmerge_adapter()
            adapted.unload()  # the base model's own layers back, as they were (to float rounding)
        figures = {
            "trial": trial,
            "items": items,
            "seconds": round(time.perf_counter() - started, 1),
            "estimated_seconds": round(estimate, 1),
            "scores": {name: score.as_dict() for name, score in scores.items()},
        }
        state.pick_scores = figures
        return figures

    def score_full(self, model: PreTrainedModel, items: int) -> dict[str, Any]:
        """Score `model` as it is (full fine-tuning's best run, its weights in place) on the pick's items, `items` per
        benchmark; returns {items, seconds, scores}. Like an adapter's, its scores are not cached."""
        self.notify(f"scoring full fine-tuning's best run on the pick's items ({items} per benchmark)")
        started = time.perf_counter()
        scores = score_model(
            model, self.tokenizer, self._settings(items), self.data_dir, self.runtime, notify=self.notify
        )
        return {
            "items": items,
            "seconds": round(time.perf_counter() - started, 1),
            "scores": {name: score.as_dict() for name, score in scores.items()},
        }
