"""What crosses layers and lands on disk, as typed records with one JSON round trip each (pure).

Each record writes the keys its file has always held, plus `version`; `from_json` reads files written before
versions existed (no `version` key) the same way, and refuses a version newer than it knows. `recommendation` holds
the trial record and the recommendation, `scores` the study's scores, `reference` full fine-tuning beside the pick,
`report` a full run's report, `io` the round trip they share.
"""

from tuner.records.io import RECORD_VERSION
from tuner.records.recommendation import DataSize, ObjectiveSummary, Recommendation, TrialRecord
from tuner.records.reference import ConfirmGap, LossGap, ReferenceRun, ReferenceSummary, ScoreGap
from tuner.records.report import RunReport
from tuner.records.scores import PickSummary, ScoreChange, ScorePoint, ScoreRow, StudyScores

__all__ = [
    "RECORD_VERSION",
    "ConfirmGap",
    "DataSize",
    "LossGap",
    "ObjectiveSummary",
    "PickSummary",
    "Recommendation",
    "ReferenceRun",
    "ReferenceSummary",
    "RunReport",
    "ScoreChange",
    "ScoreGap",
    "ScorePoint",
    "ScoreRow",
    "StudyScores",
    "TrialRecord",
]
