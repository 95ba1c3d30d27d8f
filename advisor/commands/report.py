"""`advisor report`: a study's files, from its storage, on any machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def report(*, storage: str, study: str, out: Path | None = None, json_output: bool = False) -> int:
    """Write a study's files from its storage: the one many workers share, from any machine.

    The run directory gets settings.json, a record per trial in trials/, and, once the study has finished, the
    recommendation and its plot, as `advisor tune` writes them (its --out on the machine that summarised it).
    While workers still run the study, the trials that ended so far are written, and the line says so.
    """
    from tuner.rundir import check_out_dir
    from tuner.study.report import report_study
    from tuner.study.state import run_dir_name

    out = out or Path("runs") / run_dir_name(study)
    check_out_dir(out, "study")
    found = report_study(storage, study, out)
    sys.stderr.write(found.describe() + "\n")
    for path in found.written:
        sys.stderr.write(f"  wrote {path}{'/' if path.is_dir() else ''}\n")
    if json_output:
        payload = found.recommendation.to_json() if found.recommendation is not None else None
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    return 0
