"""`advisor report`: a study's files, from its storage, on any machine."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from advisor.flags import option


@dataclass(frozen=True, kw_only=True)
class ReportArgs:
    """`advisor report`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py)."""

    storage: str = option(metavar="URL")
    """the Optuna RDB URL the study is stored in"""
    study: str = option(metavar="NAME")
    """the study's name there"""
    out: Path | None = option(None, metavar="DIR", shown_default="runs/NAME")
    """where its files go"""
    json: bool = False
    """print the recommendation as JSON on stdout"""


def report(args: ReportArgs) -> int:
    """Write a study's files from its storage: the one many workers share, from any machine.

    The run directory gets settings.json, a record per trial in trials/, and, once the study has finished, the
    recommendation and its plot, as `advisor tune` writes them (its --out on the machine that summarised it).
    While workers still run the study, the trials that ended so far are written, and the line says so.
    """
    from tuner.rundir import check_out_dir
    from tuner.study.report import report_study
    from tuner.study.state import run_dir_name

    out = args.out or Path("runs") / run_dir_name(args.study)
    check_out_dir(out, "study")
    found = report_study(args.storage, args.study, out)
    sys.stderr.write(found.describe() + "\n")
    for path in found.written:
        sys.stderr.write(f"  wrote {path}{'/' if path.is_dir() else ''}\n")
    if args.json:
        payload = found.recommendation.to_json() if found.recommendation is not None else None
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    return 0
