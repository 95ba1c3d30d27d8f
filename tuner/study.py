"""The Optuna study: paper configurations first, then TPE with median pruning, resumable from disk."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.benchmarks import BENCHMARKS, LEARNING_TASK, forgetting_score, study_benchmarks
from tuner.errors import AdvisorError
from tuner.events import (
    Reporter,
    Stage,
    StudyFinished,
    StudyStarted,
    TrialEvaluated,
    TrialFinished,
    TrialProgress,
    TrialScored,
    TrialStarted,
    ignore,
)
from tuner.objective import forgetting_rise, objective_value
from tuner.recommend import recommend
from tuner.rundir import run_dir_lock, write_json
from tuner.runtime import quiet_libraries
from tuner.settings import LoraSettings, StudySettings
from tuner.space import SearchSpace, lora_from_params

if TYPE_CHECKING:
    import optuna
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuner.data import StudyData
    from tuner.evaluation import TaskScore, TrialScorer
    from tuner.models import ModelSource
    from tuner.runtime import Runtime
    from tuner.trial import TrialResult

Feasibility = Callable[[LoraSettings], "str | None"]
"""Why an adapter configuration would not fit the memory budget, or None if it fits."""
STUDY_NAME = "advisor"
"""The study's name in the run directory's own SQLite file."""
PLOT_FILE = "learning_vs_forgetting.png"
STARTUP_TRIALS = 5
"""Trials before TPE models the space: the enqueued paper configurations, then random draws."""


class TrialFailed(Exception):
    """A trial that could not run (out of memory); recorded as FAIL with its reason, and the study goes on."""


def default_storage(run_dir: Path) -> str:
    """The study's SQLite file inside the run directory."""
    return f"sqlite:///{run_dir.resolve() / 'study.db'}"


def study_name(run_dir: Path, external_storage: bool) -> str:
    """The study's name: fixed in the run directory's own file, the run directory's path in a shared database."""
    return f"{STUDY_NAME}:{run_dir.resolve()}" if external_storage else STUDY_NAME


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage, or AdvisorError for a URL it cannot open."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # noqa: BLE001 (SQLAlchemy raises many types for bad URLs and unreachable servers)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AdvisorError(f"cannot open study storage {url!r}: {first}") from None


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as written to RUN_DIR/trials/: parameters, outcome, losses and curve."""
    attrs = trial.user_attrs
    record: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "value": trial.value,
        "reason": attrs.get("pruned_reason") or attrs.get("failed_reason"),
        "target_loss": attrs.get("target_loss"),
        "general_loss": attrs.get("general_loss"),
        "forgetting_rise": attrs.get("forgetting_rise"),
        "tokens_per_second": attrs.get("tokens_per_second"),
        "train_seconds": attrs.get("train_seconds"),
        "evaluations": attrs.get("evaluations", []),
        "infeasible": bool(attrs.get("infeasible", False)),
        "measured_peak_bytes": attrs.get("measured_peak_bytes"),
        "scores": {name: score["score"] for name, score in attrs.get("scores", {}).items()},
        "scoring_seconds": round(sum(score["seconds"] for score in attrs.get("scores", {}).values()), 2),
        "general_score": attrs.get("general_score"),
        "learning_score": attrs.get("learning_score"),
        "train_curve": attrs.get("train_curve", []),
        "intermediate_values": {str(step): value for step, value in trial.intermediate_values.items()},
        "started": trial.datetime_start,
        "finished": trial.datetime_complete,
    }
    if trial.params:
        record["lora"] = asdict(lora_from_params(trial.params))
    return record


def _is_interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "failed_reason" not in trial.user_attrs


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that reached an end: complete, pruned, or failed for a recorded reason (not interrupted)."""
    from optuna.trial import TrialState

    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=ended) if not _is_interrupted(t)]


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark trials left running by a killed process as failed and enqueue their parameters again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
    requeued = set(study.user_attrs.get("requeued", []))
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if _is_interrupted(trial) and trial.number not in requeued:
            if trial.params:
                study.enqueue_trial(trial.params)
                count += 1
            requeued.add(trial.number)
    study.set_user_attr("requeued", sorted(requeued))
    return count


class Engine:
    """Runs one study: prepares data and model, runs trials through Optuna, writes the run directory."""

    def __init__(
        self,
        settings: StudySettings,
        run_dir: Path,
        *,
        data_dir: Path | None = None,
        storage: str | None = None,
        space: SearchSpace | None = None,
        report: Reporter = ignore,
        allow_code_execution: bool = False,
        score_items: int | None = None,
        feasible: Feasibility | None = None,
        first_configurations: list[dict[str, object]] | None = None,
    ) -> None:
        self.first_configurations = first_configurations or []
        """Parameters tried before the paper's (a preset the study starts from)."""
        self.feasible = feasible
        """Why a configuration cannot fit the memory budget (None when it can); checked before a trial runs."""
        self.settings = settings
        self.allow_code_execution = allow_code_execution
        self.score_items = score_items
        """Items per benchmark when scoring trials: None sizes them to the trial time, 0 turns scoring off."""
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.scorer: TrialScorer | None = None
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.storage_url = storage
        self.space = space or SearchSpace()
        self.report = report
        self.study_name = study_name(run_dir, external_storage=storage is not None)

    def run(self) -> dict[str, Any]:
        """Run the study to its trial count and return the recommendation (also in recommendation.json)."""
        import optuna

        from tuner.data import prepare_study_data
        from tuner.models import load_tokenizer, model_identity, resolve_model

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        quiet_libraries()
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise AdvisorError(f"--out {self.run_dir} exists and is not a directory")
        storage = open_storage(self.storage_url) if self.storage_url else None
        stored = self._stored_study(storage)
        if stored is not None:
            self._check_identity(stored)

        source = resolve_model(self.settings.model)
        self.report(Stage(f"loading tokenizer of {source.describe()}"))
        tokenizer = self.tokenizer = load_tokenizer(source)
        self.report(Stage(f"preparing {self.settings.task} data"))
        data = prepare_study_data(self.settings, tokenizer, self.data_dir)
        identity = model_identity(source)

        created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with run_dir_lock(self.run_dir):
                return self._run_locked(storage, source, data, identity, len(stored.trials) if stored else 0)
        except BaseException:
            if created and not (self.run_dir / "trials").exists():
                shutil.rmtree(self.run_dir, ignore_errors=True)  # nothing ran: leave nothing behind
            raise

    def _stored_study(self, storage: optuna.storages.RDBStorage | None) -> optuna.Study | None:
        import optuna

        if storage is None:
            if not (self.run_dir / "study.db").is_file():
                return None
            storage = open_storage(default_storage(self.run_dir))
        try:
            return optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:
            return None

    def _check_identity(self, study: optuna.Study) -> None:
        stored = study.user_attrs.get("settings")
        wanted = json.loads(json.dumps(self.settings.identity()))
        if stored is not None and stored != wanted:
            differing = sorted(k for k in wanted if stored.get(k) != wanted[k])
            raise AdvisorError(
                f"{self.run_dir} holds a study with other settings ({', '.join(differing)} differ); "
                "resume it with the same settings or choose another --out"
            )

    def _run_locked(
        self,
        storage: optuna.storages.RDBStorage | None,
        source: ModelSource,
        data: StudyData,
        identity: str,
        trials_before: int,
    ) -> dict[str, Any]:
        import optuna

        from tuner.models import load_model
        from tuner.runtime import pick_runtime, return_freed_memory
        from tuner.trial import heldout_loss

        settings, budget = self.settings, self.settings.budget
        storage = storage or open_storage(default_storage(self.run_dir))
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            direction="minimize",
            load_if_exists=True,
            # Seeded past the trials already there, so a resumed study draws fresh points.
            sampler=optuna.samplers.TPESampler(
                seed=settings.seed + trials_before, n_startup_trials=STARTUP_TRIALS, multivariate=True
            ),
            # The first evaluation is never pruned (Optuna prunes from step n_warmup_steps on):
            # the earliest losses rank learning rates poorly, mid-warm-up.
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=budget.eval_steps()[0] + 1),
        )
        if "settings" not in study.user_attrs:
            study.set_user_attr("settings", json.loads(json.dumps(settings.identity())))
            for params in [*self.first_configurations, *self.space.paper_configurations(settings.task)]:
                if self.feasible is None or self.feasible(lora_from_params(params)) is None:
                    study.enqueue_trial(params, skip_if_exists=True)
        requeue_interrupted(study)
        write_json(self.run_dir / "settings.json", {**asdict(settings), "storage": self.storage_url or "study.db"})
        (self.run_dir / "trials").mkdir(exist_ok=True)
        self._write_trials(study)

        finished = len(finished_trials(study))
        self.report(StudyStarted(settings.trials, finished, str(self.run_dir)))
        remaining = settings.trials - finished
        runtime = pick_runtime()
        base = study.user_attrs.get("base_losses")
        if base is not None and base.get("model_identity") != identity:
            raise AdvisorError(f"the weights of {settings.model} changed since this study started; use another --out")

        if remaining > 0:
            if settings.memory_budget is not None and not runtime.is_cuda:
                # Under a budget, the peak the estimate predicts rather than glibc's retained pages: 2.8 GB
                # instead of 4.7 GB for r=16 at 4 x 256 on SmolLM2-135M, at 125-160 instead of 190-200 tokens/s.
                return_freed_memory()
            self.report(Stage(f"loading {source.describe()} on {runtime.describe()}"))
            model = load_model(source, runtime.device, runtime.dtype)
            if base is None:
                self.report(Stage("scoring the base model on held-out target and general text"))
                base = {
                    "model_identity": identity,
                    "target_loss": heldout_loss(model, data.heldout, budget.batch_size, runtime),
                    "general_loss": heldout_loss(model, data.general, budget.batch_size, runtime),
                }
                study.set_user_attr("base_losses", base)

            self.scorer = self._scorer(study, runtime, identity)

            def objective(trial: optuna.Trial) -> float:
                return self._objective(trial, model, data, runtime, base)

            study.optimize(
                objective,
                n_trials=remaining,
                catch=(TrialFailed,),
                callbacks=[self._trial_done],
            )
        records = self._write_trials(study)
        base_losses = {k: v for k, v in (base or {}).items() if k != "model_identity"}
        recommendation = recommend(settings, records, base_losses)
        recommendation["runtime"] = runtime.describe()
        recommendation["run_dir"] = str(self.run_dir)
        recommendation["scores"] = self._final_stage(study, records)
        write_json(self.run_dir / "recommendation.json", recommendation)
        self.report(StudyFinished(recommendation, records))
        return recommendation

    def _objective(
        self, trial: optuna.Trial, model: PreTrainedModel, data: StudyData, runtime: Runtime, base: dict[str, Any]
    ) -> float:
        """Run one trial; Optuna records its value, or PRUNED / FAIL with the reason in its user attributes."""
        import optuna
        import torch

        from tuner.trial import run_trial

        settings, budget = self.settings, self.settings.budget
        params = self.space.suggest(trial)
        lora = lora_from_params(params)
        index = len(finished_trials(trial.study)) + 1
        self.report(TrialStarted(trial.number, index, settings.trials, budget.steps(), params))
        too_big = self.feasible(lora) if self.feasible is not None else None
        if too_big is not None:
            trial.set_user_attr("infeasible", True)
            trial.set_user_attr("pruned_reason", f"infeasible: {too_big}")
            raise optuna.TrialPruned(too_big)

        def on_step(step: int, loss: float, tokens_per_second: float) -> None:
            self.report(TrialProgress(trial.number, step, budget.steps(), loss, tokens_per_second))

        def on_eval(step: int, target_loss: float, general_loss: float) -> str | None:
            value = objective_value(target_loss, general_loss, base["general_loss"], settings.goal)
            self.report(TrialEvaluated(trial.number, step, target_loss, general_loss, value))
            trial.report(value, step)
            if trial.should_prune():
                return (
                    f"pruned at step {step}: objective {value:.4f} is worse than the median of earlier "
                    "trials at this step"
                )
            return None

        scores: dict[str, Any] = {}

        def on_trained(adapted: PeftModel, result: TrialResult) -> None:
            if self.scorer is not None:
                scores.update(self.scorer(adapted, result.train_seconds) or {})

        try:
            result = run_trial(
                model,
                data,
                lora,
                float(params["learning_rate"]),
                budget,
                runtime,
                start_loss=base["target_loss"],
                seed=settings.seed + trial.number,
                on_step=on_step,
                on_eval=on_eval,
                on_trained=on_trained,
            )
        except torch.OutOfMemoryError as error:
            peak = torch.cuda.max_memory_allocated() if runtime.is_cuda else None
            measured = f" (peak {peak / (1 << 30):.2f} GiB allocated)" if peak else ""
            trial.set_user_attr("infeasible", True)
            trial.set_user_attr("measured_peak_bytes", peak)
            trial.set_user_attr("failed_reason", f"out of memory{measured}: {str(error).splitlines()[0]}")
            raise TrialFailed(str(error)) from None
        trial.set_user_attr("train_curve", [[s, round(v, 5)] for s, v in result.train_curve])
        trial.set_user_attr("evaluations", [list(e) for e in result.evaluations])
        trial.set_user_attr("tokens_per_second", round(result.tokens_per_second(), 1))
        trial.set_user_attr("train_seconds", round(result.train_seconds, 2))
        if result.evaluations:
            _, target_loss, general_loss = result.evaluations[-1]
            trial.set_user_attr("target_loss", target_loss)
            trial.set_user_attr("general_loss", general_loss)
            trial.set_user_attr("forgetting_rise", forgetting_rise(general_loss, base["general_loss"]))
        if scores:
            self._record_scores(trial, scores)
        if result.stopped_reason:
            trial.set_user_attr("pruned_reason", result.stopped_reason)
            raise optuna.TrialPruned(result.stopped_reason)
        return objective_value(target_loss, general_loss, base["general_loss"], settings.goal)

    def _scorer(self, study: optuna.Study, runtime: Runtime, identity: str) -> TrialScorer | None:
        """What scores the surviving trials on the benchmarks, or None when scoring is off."""
        from tuner.evaluation import TrialScorer

        if self.score_items == 0:
            return None
        return TrialScorer(
            study,
            self.tokenizer,
            self.data_dir,
            runtime,
            identity=identity,
            benchmarks=study_benchmarks(self.settings.task, self.allow_code_execution),
            seed=self.settings.seed,
            allow_code_execution=self.allow_code_execution,
            fixed_items=self.score_items,
            notify=lambda message: self.report(Stage(message)),
        )

    def _record_scores(self, trial: optuna.Trial, scores: dict[str, TaskScore]) -> None:
        figures = {name: score.score for name, score in scores.items()}
        learning = LEARNING_TASK.get(self.settings.task)
        trial.set_user_attr("scores", {name: score.as_dict() for name, score in scores.items()})
        trial.set_user_attr("general_score", forgetting_score(figures))
        trial.set_user_attr("learning_score", figures.get(learning) if learning else None)
        self.report(
            TrialScored(trial.number, figures, trial.user_attrs["general_score"], trial.user_attrs["learning_score"])
        )

    def _final_stage(self, study: optuna.Study, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The study's scores: the base model, the trials that were scored, their Pareto front and the plot."""
        from tuner.plot import ScorePoint, pareto_front, write_png

        base = study.user_attrs.get("base_scores")
        if base is None:
            plan = study.user_attrs.get("score_plan")
            return {"plan": plan} if plan else None
        base_figures = {name: score["score"] for name, score in base.items()}
        learning = LEARNING_TASK.get(self.settings.task)
        summary: dict[str, Any] = {
            "plan": study.user_attrs.get("score_plan"),
            "base": base_figures,
            "base_general": forgetting_score(base_figures),
            "base_learning": base_figures.get(learning) if learning else None,
            "learning_benchmark": learning if learning in base_figures else None,
            "trials": {r["number"]: r["scores"] for r in records if r.get("scores")},
        }
        if summary["learning_benchmark"] is None:
            if learning is not None:
                summary["note"] = f"{learning} not scored: it runs generated code; pass --allow-code-execution"
            return summary
        points = [ScorePoint("base", summary["base_general"], summary["base_learning"], is_base=True)]
        points += [
            ScorePoint(f"trial {r['number']}", r["general_score"], r["learning_score"])
            for r in records
            if r.get("general_score") is not None and r.get("learning_score") is not None
        ]
        front = pareto_front(points)
        summary["pareto_front"] = [
            {"trial": int(p.label.removeprefix("trial ")), "general": p.general, "learning": p.learning} for p in front
        ]
        if len(points) > 1:
            title = f"{self.settings.task}: learning vs forgetting ({self.settings.model})"
            plot = write_png(points, self.run_dir / PLOT_FILE, learning_name=BENCHMARKS[learning].title, title=title)
            summary["plot"] = plot.name
        summary["points"] = [asdict(p) for p in points]
        return summary

    def _trial_done(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = trial_record(trial)
        write_json(self.run_dir / "trials" / f"trial_{trial.number:04d}.json", record)
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0.0
        self.report(TrialFinished(trial.number, trial.state.name, trial.value, record["reason"], seconds))

    def _write_trials(self, study: optuna.Study) -> list[dict[str, Any]]:
        records = [trial_record(t) for t in finished_trials(study)]
        for record in records:
            write_json(self.run_dir / "trials" / f"trial_{record['number']:04d}.json", record)
        return records


def run_study(settings: StudySettings, run_dir: Path, **options: Any) -> dict[str, Any]:
    """Run (or resume) a study and return its recommendation."""
    return Engine(settings, run_dir, **options).run()
