"""optuna-dashboard opens the advisor's studies, SQLite or PostgreSQL, with their user attributes readable: its own
WSGI app, asked what its web page asks for."""

from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import pytest

from tests.tuner.study.test_study import TINY_SPACE, settings
from tuner.study.options import StudyOptions
from tuner.study.run import run_study
from tuner.study.state import default_storage, open_storage


def dashboard_get(storage, path: str, query: str = "") -> dict:
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, QUERY_STRING=query)
    status: list[str] = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status == ["200 OK"], body[:500]
    return json.loads(body)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_dashboard_reads_a_finished_study(backend, tiny_model, data_dir, tmp_path, request):
    run_dir = tmp_path / "run"
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    study = "dash" if url else None
    recommendation = run_study(
        settings(tiny_model, 2),
        run_dir,
        StudyOptions(data_dir=data_dir, space=TINY_SPACE, storage=url, study=study, score_items=0),
    )
    storage = open_storage(url or default_storage(run_dir))
    summaries = dashboard_get(storage, "/api/studies")["study_summaries"]
    assert len(summaries) == 1
    detail = dashboard_get(storage, f"/api/studies/{summaries[0]['study_id']}", "after=0")
    shown = {attr["key"]: attr["value"] for attr in detail["user_attrs"]}
    # The dashboard cuts values at 1,024 characters: the headline is whole, the long records are there to open.
    assert shown["headline"] == recommendation.headline()
    assert f"trial {recommendation.trial}: lr {recommendation.learning_rate:.3g}" in shown["headline"]
    assert json.loads(shown["settings"])["task"] == "math" and json.loads(shown["trials"]) == 2
    assert {"recommendation", "base_losses", "starting_points"} <= set(shown)
    assert len(detail["trials"]) == 2
    trial_attrs = {attr["key"] for attr in detail["trials"][0]["user_attrs"]}
    assert {"worker", "train_curve", "evaluations", "target_loss"} <= trial_attrs
