"""A study's files written from its storage alone, on any machine: what `advisor report --storage --study` does.

The storage holds everything a report needs (trial records, base losses and scores, the recommendation): the
run directory's files are rebuilt from it, the plot drawn again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tuner.errors import AdvisorError
from tuner.records import Recommendation, TrialRecord
from tuner.rundir import write_json
from tuner.study.state import StudyState, load_named_study
from tuner.study.summary import TRIALS_DIR, pick_summary, study_scores, write_trials
from tuner.study.trials import running_trials


@dataclass(frozen=True)
class StudyReport:
    """What a report found in the storage and wrote."""

    name: str
    trials: list[TrialRecord]
    target: int | None
    """The trials the study runs to (None where no run recorded it)."""
    running: int
    recommendation: Recommendation | None
    """The finished study's recommendation (None while it runs)."""
    written: list[Path]

    def describe(self) -> str:
        """One line: how far the study is and what was written."""
        counts: dict[str, int] = {}
        for record in self.trials:
            counts[record.state.lower()] = counts.get(record.state.lower(), 0) + 1
        ended = ", ".join(f"{count} {state}" for state, count in sorted(counts.items())) or "none"
        of = f" of {self.target}" if self.target is not None else ""
        status = "finished" if self.recommendation is not None else f"running ({self.running} trials now)"
        return f"study {self.name!r}: {status}; trials{of}: {ended}"


def report_study(url: str, name: str, out: Path) -> StudyReport:
    """Write study NAME's files into `out` from the storage at URL: its settings, a record per trial, and, once the
    study has finished, its recommendation and plot. AdvisorError for an unknown study or an unusable `out`."""
    study = load_named_study(url, name)
    state = StudyState(study)
    settings = state.stored_settings()
    if settings is None:
        raise AdvisorError(f"study {name!r} in {url} was not started by the advisor (it has no advisor settings)")
    if out.exists() and not out.is_dir():
        raise AdvisorError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", {**settings.to_json(), "storage": url, "study": name})
    (out / TRIALS_DIR).mkdir(exist_ok=True)
    records = write_trials(out, study)
    written = [out / "settings.json", out / "trials"]
    stored = state.recommendation
    recommendation = Recommendation.from_json(stored) if stored is not None else None
    if recommendation is not None:
        scores = pick_summary(study_scores(settings, out, state, records), recommendation.trial)  # draws the plot
        recommendation = replace(recommendation, run_dir=str(out), scores=scores)
        write_json(out / "recommendation.json", recommendation.to_json())
        written.append(out / "recommendation.json")
        if scores is not None and scores.plot:
            written.append(out / scores.plot)
    return StudyReport(name, records, state.trials, len(running_trials(study)), recommendation, written)
