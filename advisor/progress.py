"""The headless display of a running study: rich progress bars, a line per trial, a summary table."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tuner.events import (
    CheckpointSaved,
    EpochEvaluated,
    Event,
    RunScored,
    Stage,
    StudyFinished,
    StudyStarted,
    TrainEvent,
    TrainFinished,
    TrainProgress,
    TrainStarted,
    TrialEvaluated,
    TrialFinished,
    TrialProgress,
    TrialScored,
    TrialStarted,
)
from tuner.records import Recommendation, RunReport, StudyScores, TrialRecord
from tuner.scoring.benchmarks import BENCHMARKS
from tuner.scoring.benchmarks.roles import NOISE_SE
from tuner.study.space import lora_from_params


def describe_params(params: dict[str, Any]) -> str:
    """A trial's configuration in one short phrase."""
    if not params:
        return "-"
    lora = lora_from_params(params)
    variant = f", {lora.variant}" if lora.variant != "lora" else ""
    return f"lr {float(params['learning_rate']):.2e}, r {lora.rank}, alpha {lora.alpha:g}, {lora.targets}{variant}"


def step_progress(console: Console) -> Progress:
    """A bar per task: description, bar, done/total, a free text field, elapsed and remaining time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class RichReporter:
    """Renders study events: the study bar (trial i/N, ETA) and the running trial's bar (step, loss, tokens/s)."""

    def __init__(self, console: Console, summary_console: Console) -> None:
        self.console = console
        self.summary_console = summary_console
        self.progress = step_progress(console)
        self.study_task: TaskID | None = None
        self.trial_task: TaskID | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Stage):
            if self.console.is_terminal:  # in a log, only outcomes: an error stays the one line on stderr
                self.console.print(f"[dim]{event.message}...[/dim]")
        elif isinstance(event, StudyStarted):
            self.progress.start()
            if event.spent_share is not None:  # a budgeted study: the bar is the budget, in per cent
                self.study_task = self.progress.add_task(
                    "budget %", total=100, completed=min(100, round(100 * event.spent_share)), info=event.budget
                )
            else:
                self.study_task = self.progress.add_task(
                    "trials", total=event.total_trials, completed=event.finished_trials, info=event.run_dir
                )
        elif isinstance(event, TrialStarted):
            if self.trial_task is not None:
                self.progress.remove_task(self.trial_task)
            self.trial_task = self.progress.add_task(
                f"trial {event.index}/{event.total}" if event.total else f"trial {event.index}",
                total=event.steps,
                info=describe_params(event.params),
            )
        elif isinstance(event, TrialProgress) and self.trial_task is not None:
            self.progress.update(
                self.trial_task,
                completed=event.step,
                info=f"loss {event.loss:.4f}  {event.tokens_per_second:,.0f} tok/s",
            )
        elif isinstance(event, TrialEvaluated):
            self.progress.console.print(
                f"  trial {event.number} step {event.step}: held-out loss {event.target_loss:.4f}, "
                f"general {event.general_loss:.4f}, objective {event.objective:.4f}"
            )
        elif isinstance(event, TrialScored):
            self.progress.console.print(f"  trial {event.number} scored: {scores_text(event)}")
        elif isinstance(event, TrialFinished):
            self._trial_finished(event)
        elif isinstance(event, StudyFinished):
            self.progress.stop()
            self.summary_console.print(summary_table(event.trials))
            plot = scores_plot(event.recommendation.scores, self.summary_console)
            if plot:
                self.summary_console.print(plot, markup=False, highlight=False)
            self.summary_console.print(recommendation_text(event.recommendation))

    def _trial_finished(self, event: TrialFinished) -> None:
        if self.study_task is not None and event.spent_share is not None:
            share = min(100, round(100 * event.spent_share))
            self.progress.update(self.study_task, completed=share, info=event.spent)
        elif self.study_task is not None:
            self.progress.advance(self.study_task)
        if self.trial_task is not None:
            self.progress.remove_task(self.trial_task)
            self.trial_task = None
        value = f"objective {event.value:.4f}" if event.value is not None else "no objective"
        reason = f": {event.reason}" if event.reason else ""
        self.progress.console.print(
            f"trial {event.number} {event.state.lower()} ({value}, {event.seconds:.0f} s){reason}"
        )

    def close(self) -> None:
        """Stop the live display (also after an error); prints nothing if it never started."""
        if self.study_task is not None:
            self.progress.stop()


def scores_text(event: TrialScored | RunScored) -> str:
    """A scored trial's (or the full run's) figures in one line."""
    parts = [f"{name} {value:.3f}" for name, value in event.scores.items()]
    if event.general is not None:
        parts.append(f"general mean {event.general:.3f}")
    return ", ".join(parts)


def scores_lines(scores: StudyScores | None, run_dir: str | None) -> list[str]:
    """What the scoring stage found, for the recommendation text: the pick's learning and general scores against
    the base model's, each with its standard error."""
    if not scores:
        return []
    plan = scores.plan or {}
    if scores.base is None:
        return [f"  scores: none ({scores.note or plan.get('reason') or 'scoring is off'})"]
    lines = [f"  scores: {scores.items} items per benchmark ({plan.get('reason', '')})"]
    pick = scores.pick or {}
    if pick.get("general") or pick.get("learning"):
        lines.append(f"  trial {pick['trial']} against the base model (± one standard error):")
        if pick.get("general"):
            lines.append(f"    {change_text('general mean', pick['general'])}")
        if pick.get("learning"):
            lines.append(f"    {change_text(BENCHMARKS[pick['learning']['benchmark']].title, pick['learning'])}")
    elif scores.base_general is not None:
        lines.append(
            f"  base model: general mean {scores.base_general:.3f}"
            + (f", {scores.learning_benchmark} {scores.base_learning:.3f}" if scores.learning_benchmark else "")
        )
    if scores.note:
        lines.append(f"  {scores.note}")
    front = scores.pareto_front
    if front and len(scores.trials or {}) > 1:
        members = ", ".join(
            f"trial {p['trial']} (general {p['general']:.3f}, learning {p['learning']:.3f})" for p in front
        )
        lines.append(f"  Pareto front: {members}")
    if scores.plot:
        lines.append(f"  plot: {run_dir}/{scores.plot}")
    return lines


def with_error(value: float, error: float | None, sign: str = "") -> str:
    """'0.417 ± 0.082' (or '+0.012 ± 0.020' with sign '+'); the value alone where there is no error."""
    return f"{value:{sign}.3f}" + (f" ± {error:.3f}" if error is not None else "")


def change_text(name: str, figure: dict[str, Any]) -> str:
    """'general mean 0.417 ± 0.082 (base 0.444 ± 0.083): -0.028 ± 0.041 paired, within noise' (paired: the change's
    error from the per-item differences on the same items)."""
    paired = " paired" if figure.get("paired") else ""
    change = with_error(figure["change"], figure.get("change_stderr"), "+") + paired
    verdict = "within noise" if figure.get("within_noise") else "beyond noise (2 standard errors)"
    base = with_error(figure["base"], figure.get("base_stderr"))
    return f"{name} {with_error(figure['score'], figure.get('stderr'))} (base {base}): {change}, {verdict}"


def scores_plot(scores: StudyScores | None, console: Console) -> str | None:
    """The learning-vs-forgetting scatter of a study's scored trials, sized to the console; None without one."""
    from tuner.scoring.plot import ScorePoint, terminal_plot

    if not scores or not scores.points or len(scores.points) < 2 or scores.learning_benchmark is None:
        return None
    points = [ScorePoint(**point) for point in scores.points]
    width = max(40, min(console.width, 100))
    title = BENCHMARKS[scores.learning_benchmark].title
    return terminal_plot(points, learning_name=title, width=width, height=20, color=console.is_terminal)


def trial_outcome(trial: TrialRecord) -> str:
    """'complete', 'pruned', 'diverged' or 'fail'."""
    return "diverged" if trial.diverged() else trial.state.lower()


def summary_table(trials: list[TrialRecord]) -> Table:
    """Every finished trial: its configuration, outcome and losses (fits 80 columns)."""
    table = Table(
        title="Trials", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False
    )
    for column in ("#", "lr", "r", "alpha", "targets", "outcome", "obj", "loss", "forgot", "tok/s"):
        table.add_column(column, justify="left" if column in ("targets", "outcome") else "right")

    def number(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    for trial in trials:
        params = trial.params
        lora = trial.lora or {}
        table.add_row(
            str(trial.number),
            number(params.get("learning_rate"), ".1e"),
            str(params.get("rank", "-")),
            number(lora.get("alpha"), "g"),
            str(params.get("targets", "-")),
            trial_outcome(trial),
            number(trial.value, ".4f"),
            number(trial.target_loss, ".4f"),
            number(trial.forgetting_rise, "+.4f"),
            number(trial.tokens_per_second, ",.0f"),
        )
    return table


def reference_lines(reference: dict[str, Any] | None) -> list[str]:
    """Full fine-tuning beside the pick: its rates, the ratio of the best rates (the paper's finding: about 10x),
    the held-out loss gaps, paired over the confirm rows where measured there, and the score gaps where its best
    run was scored."""
    if not reference:
        return []
    runs = ", ".join(
        f"{run['rate']:.3g} "
        + (f"{run['target_loss']:.4f}" if run.get("target_loss") is not None else "-")
        + (" (stopped)" if run.get("stopped") else "")
        for run in sorted(reference["runs"].values(), key=lambda run: run["rate"])
    )
    lines = [
        "  reference, full fine-tuning; held-out loss by rate:",
        f"    {runs}",
        f"    LoRA's rate {reference['lora_rate']:.3g} / full's best {reference['best_rate']:.3g} = "
        f"{reference['rate_ratio']:.3g}x",
        "    (LoRA Without Regret: about 10x; Biderman et al. 2024: 4-10x)",
    ]
    for name, label in (("target_loss", "task"), ("general_loss", "general-text")):
        figure = reference.get(name) or {}
        confirm = figure.get("confirm")
        if confirm:
            verdict = "within noise" if abs(confirm["gap"]) <= NOISE_SE * confirm["stderr"] else "beyond noise"
            lines.append(
                f"    {label} loss, LoRA - full: {confirm['gap']:+.4f} ± {confirm['stderr']:.4f}, "
                f"{verdict} ({confirm['rows']} rows, paired)"
            )
        elif figure.get("gap") is not None:
            lines.append(f"    {label} loss, LoRA - full: {figure['gap']:+.4f} (no confirm rows to pair)")
    return lines + reference_score_lines(reference)


def reference_score_lines(reference: dict[str, Any]) -> list[str]:
    """Full fine-tuning's best run on the pick's benchmark items: its general and learning scores against the base
    model's, and LoRA's minus its own, each with its standard error (lines within 80 columns)."""
    scores = [
        (BENCHMARKS[figure["benchmark"]].title if name == "learning_score" else "general", figure)
        for name in ("general_score", "learning_score")
        if (figure := reference.get(name))
    ]
    if not scores:
        return []
    items = reference["score_items"]
    lines = [f"    full fine-tuning (lr {reference['best_rate']:.3g}) against the base, {items} items per benchmark:"]
    for title, figure in scores:
        full = figure["full"]
        change = with_error(full["change"], full.get("change_stderr"), "+") + (" paired" if full.get("paired") else "")
        verdict = "within noise" if full.get("within_noise") else "beyond noise"
        score = with_error(full["score"], full.get("stderr"))
        lines.append(f"      {title} {score} (base {full['base']:.3f}): {change}, {verdict}")
    for title, figure in scores:
        gap = with_error(figure["gap"], figure.get("stderr"), "+") + (" (paired)" if figure.get("paired") else "")
        verdict = "within noise" if figure.get("within_noise") else "beyond noise"
        named = "general score" if title == "general" else f"learning ({title})"
        lines.append(f"    {named}, LoRA - full: {gap}, {verdict}")
    return lines


def recommendation_text(recommendation: Recommendation) -> str:
    """The recommended configuration, one line per choice with its evidence."""
    lines = [
        f"[bold]Recommended[/bold] for {recommendation.task} on {recommendation.model}: "
        f"lr {recommendation.learning_rate:.2e}, rank {recommendation.rank}, "
        f"alpha {recommendation.alpha:g}, targets {recommendation.targets}, "
        + (f"variant {recommendation.variant}, " if recommendation.variant != "lora" else "")
        + f"{recommendation.epochs} epochs",
    ]
    lines += [f"  {choice}: {why}" for choice, why in recommendation.evidence.items()]
    lines += scores_lines(recommendation.scores, recommendation.run_dir)
    lines += reference_lines(recommendation.reference)
    lines.append(f"  written to {recommendation.run_dir}/recommendation.json")
    return "\n".join(lines)


class TrainRichReporter:
    """Renders the full run: a step bar (epoch, loss, tokens/s), checkpoint, epoch and score lines, the summary."""

    def __init__(self, console: Console, summary_console: Console) -> None:
        self.console = console
        self.summary_console = summary_console
        self.progress = step_progress(console)
        self.task: TaskID | None = None

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, Stage):
            if self.console.is_terminal:
                self.progress.console.print(f"[dim]{event.message}...[/dim]")
        elif isinstance(event, TrainStarted):
            self.progress.start()
            self.progress.console.print(train_start_text(event))
            self.task = self.progress.add_task("steps", total=event.total_steps, completed=event.start_step, info="")
        elif isinstance(event, TrainProgress) and self.task is not None:
            info = f"epoch {event.epoch:.2f}  loss {event.loss:.4f}  {event.tokens_per_second:,.0f} tok/s"
            self.progress.update(self.task, completed=event.step, info=info)
        elif isinstance(event, CheckpointSaved):
            if self.console.is_terminal:
                self.progress.console.print(f"[dim]checkpoint at step {event.step}[/dim]")
        elif isinstance(event, EpochEvaluated):
            self.progress.console.print(
                f"epoch {event.epoch} (step {event.step}): held-out loss {event.target_loss:.4f}, "
                f"general text {event.general_loss:.4f}"
            )
        elif isinstance(event, RunScored):
            self.progress.console.print(f"{event.label} scores: {scores_text(event)}")
        elif isinstance(event, TrainFinished):
            self.close()
            self.summary_console.print(train_summary(event.report), highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stop the live display (also after an error)."""
        if self.task is not None:
            self.progress.stop()
            self.task = None


def train_start_text(event: TrainStarted) -> str:
    """'training 4 epochs, 144 steps', with the step a resumed run starts from."""
    resumed = f", resumed at step {event.start_step}" if event.start_step else ""
    return f"training {event.epochs} epoch{'s' * (event.epochs != 1)}, {event.total_steps} steps{resumed}"


def train_summary(report: RunReport) -> str:
    """The full run's outcome in a few lines: steps, where the adapter is, learning and forgetting."""
    training = report.training
    steps, epochs = training["steps"], training["epochs"]
    lines = [f"trained {steps} step{'s' * (steps != 1)} ({epochs:g} epoch{'s' * (epochs != 1)}) on {report.runtime}"]
    for row in training["epoch_losses"]:
        lines.append(f"  epoch {row['epoch']}: held-out {row['target_loss']:.4f}, general {row['general_loss']:.4f}")
    noise = report.change_noise or {}
    if report.scores:
        base, trained = report.scores["base"], report.scores["trained"]
        if "general" in noise:
            lines.append(f"  {change_text('general mean (forgetting)', noise['general'])}")
        elif base.general is not None and trained.general is not None:
            lines.append(
                f"  general mean (forgetting): base {base.general:.3f}, trained {trained.general:.3f} "
                f"({trained.general - base.general:+.3f})"
            )
        if "learning" in noise:
            lines.append(f"  {change_text(f'{report.learning_benchmark} (learning)', noise['learning'])}")
        elif base.learning is not None and trained.learning is not None:
            lines.append(
                f"  {report.learning_benchmark} (learning): base {base.learning:.3f}, trained {trained.learning:.3f} "
                f"({trained.learning - base.learning:+.3f})"
            )
    if report.adapter:
        lines.append(f"adapter: {report.adapter}")
    if report.model_dir:
        lines.append(f"model (full fine-tuning): {report.model_dir}")
    if report.merged:
        lines.append(f"merged model: {report.merged}")
    lines.append(f"report: {report.out_dir}/report.md")
    return "\n".join(lines)
