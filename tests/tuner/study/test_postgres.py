"""Studies in PostgreSQL, the storage many workers share: on a real server (.ci/postgres starts one in CI)."""

from __future__ import annotations

import pytest

from tests.tuner.study.test_study import records, settings
from tuner.errors import AdvisorError
from tuner.study.options import StudyOptions
from tuner.study.run import run_study
from tuner.study.state import open_storage


def test_a_study_runs_and_resumes_in_postgresql(tiny_model, data_dir, tmp_path, postgres_url):
    import optuna

    from tuner.study.state import study_name

    run_dir = tmp_path / "run"
    first = run_study(settings(tiny_model, 1), run_dir, StudyOptions(data_dir=data_dir, storage=postgres_url))
    assert not (run_dir / "study.db").exists() and first.trial is not None
    again = run_study(settings(tiny_model, 2), run_dir, StudyOptions(data_dir=data_dir, storage=postgres_url))
    study = optuna.load_study(study_name=study_name(run_dir, external_storage=True), storage=postgres_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 2 and len(records(run_dir)) == 2  # the first trial kept, one more trained
    assert again.trial in {t.number for t in finished}


def test_an_unreachable_server_is_one_line():
    with pytest.raises(AdvisorError) as raised:
        open_storage("postgresql://nobody@127.0.0.1:9/nothing?connect_timeout=2")
    message = str(raised.value)
    assert (
        message.startswith("cannot open study storage 'postgresql://nobody@127.0.0.1:9/nothing")
        and "\\n" not in message
    )
