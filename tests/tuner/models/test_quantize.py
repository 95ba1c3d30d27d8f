"""QLoRA on the CPU: the tiny model's linear layers in 4-bit NF4 through bitsandbytes, a trial and a full run trained
on them, the adapter reloaded through PEFT on the 4-bit base, and the one-line refusals."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")

from tuner.errors import AdvisorError
from tuner.settings import DataSettings, LoraSettings, RunSettings, TrainBudget, TrainingRecipe


@pytest.fixture(scope="module")
def quantized(tiny_model: Path):
    import torch

    from tuner.models.load import load_model, resolve_model

    return load_model(resolve_model(str(tiny_model)), torch.device("cpu"), torch.float32, "nf4")


def test_the_linear_layers_load_in_4_bit_and_the_rest_in_float32(quantized):
    import bitsandbytes
    import torch

    from tuner.models.load import loaded_identity, resolve_model
    from tuner.models.quantize import is_quantized

    layer = quantized.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, bitsandbytes.nn.Linear4bit)
    assert layer.self_attn.q_proj.weight.quant_state.quant_type == "nf4"
    assert layer.self_attn.q_proj.weight.quant_state.nested  # double quantisation
    assert quantized.model.embed_tokens.weight.dtype == torch.float32
    assert is_quantized(quantized) and not any(p.requires_grad for p in quantized.parameters())
    source = resolve_model(str(Path(quantized.config._name_or_path)))
    assert loaded_identity(source, quantized).endswith("+nf4")  # its base scores are its own, not the 16-bit model's


def test_a_qlora_trial_learns_and_leaves_the_4_bit_base_as_it_was(quantized, tiny_model, data_dir):
    import torch

    from tuner.data.prepare import prepare_study_data
    from tuner.models.load import load_tokenizer, resolve_model
    from tuner.training.runtime import pick_runtime
    from tuner.training.trial import heldout_loss, run_trial

    budget = TrainBudget(train_tokens=16 * 4 * 128, batch_size=4, seq_len=128, evaluations=2)
    tokenizer = load_tokenizer(resolve_model(str(tiny_model)))
    data = prepare_study_data(DataSettings("math"), budget.packing(), tokenizer, data_dir)
    runtime = pick_runtime()
    before = {name: value.clone() for name, value in quantized.state_dict().items()}
    start = heldout_loss(quantized, data.heldout, 4, runtime)
    result = run_trial(quantized, data, LoraSettings(16, 32, "all"), 1e-1, budget, runtime, start_loss=start)
    assert result.stopped_reason is None
    assert result.evaluations[-1][1] < start - 0.5
    after = quantized.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[name], before[name]) for name in before)
    assert heldout_loss(quantized, data.heldout, 4, runtime) == pytest.approx(start, abs=1e-6)


def test_a_qlora_full_run_trains_saves_and_reloads_on_the_4_bit_base(tiny_model, data_dir, tmp_path):
    import torch
    from peft import PeftModel

    from tuner.fullrun.train import RunOptions, train_run
    from tuner.models.load import load_model, resolve_model

    recipe = TrainingRecipe(LoraSettings(8, 16, "all"), 1e-2, epochs=2, batch_size=2, seq_len=64, quantize="nf4")
    settings = RunSettings(model=str(tiny_model), data=DataSettings("math"), recipe=recipe, train_examples=20)
    train_run(settings, tmp_path / "run", data_dir=data_dir, options=RunOptions(save_steps=4))
    history = json.loads((tmp_path / "run" / "adapter" / "training.json").read_text())
    losses = [loss for _, loss in history["loss_curve"]]
    assert losses[-1] < losses[0]
    stored = json.loads((tmp_path / "run" / "train_settings.json").read_text())
    assert stored["quantize"] == "nf4"

    base = load_model(resolve_model(str(tiny_model)), torch.device("cpu"), torch.float32, "nf4")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").eval()
    ids = torch.arange(1, 33).reshape(1, -1)
    with torch.no_grad():
        adapted = reloaded(input_ids=ids).logits
        with reloaded.disable_adapter():
            plain = reloaded(input_ids=ids).logits
    assert (adapted - plain).abs().max() > 1e-3  # the adapter trained and loads on the 4-bit base


def test_qlora_with_full_fine_tuning_or_pissa_is_refused_in_one_line():
    with pytest.raises(ValueError, match="full fine-tuning trains every weight"):
        TrainingRecipe(LoraSettings(8, 16, "all"), 1e-5, method="full", quantize="nf4")
    with pytest.raises(ValueError, match="PiSSA"):
        TrainingRecipe(LoraSettings(8, 16, "all", variant="pissa"), 1e-4, quantize="nf4")
    with pytest.raises(ValueError, match="quantize must be one of nf4"):
        TrainingRecipe(LoraSettings(8, 16, "all"), 1e-4, quantize="int8")


def test_without_bitsandbytes_or_too_old_a_one_line_error_says_what_to_install(monkeypatch):
    from tuner.models import quantize

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(quantize.importlib.metadata, "version", missing)
    with pytest.raises(AdvisorError, match=r"needs bitsandbytes, which is not installed: pip install"):
        quantize.check_quantize("cpu")
    monkeypatch.setattr(quantize.importlib.metadata, "version", lambda name: "0.43.1")
    with pytest.raises(AdvisorError, match=r"0\.50 or later, found 0\.43\.1"):
        quantize.check_quantize("cpu")
    monkeypatch.setattr(quantize.importlib.metadata, "version", lambda name: "0.50.0")
    with pytest.raises(AdvisorError, match="not mps"):
        quantize.check_quantize("mps")


def test_the_cli_refuses_qlora_full_fine_tuning_in_one_line(tiny_model, tmp_path):
    command = [sys.executable, "-m", "advisor.cli", "train", "--model", str(tiny_model), "--task", "math"]
    done = subprocess.run(
        [*command, "--method", "full", "--quantize", "nf4", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("advisor: error: QLoRA trains an adapter")
    assert not (tmp_path / "out").exists()


def test_a_study_under_a_budget_only_4_bit_weights_fit_trains_qlora_and_says_why(tiny_model, data_dir, tmp_path):
    from dataclasses import replace

    from tuner.events import Stage
    from tuner.memory.estimate import TrainSetup, estimate, model_shape
    from tuner.settings import StudySettings
    from tuner.study.options import StudyOptions
    from tuner.study.run import run_study
    from tuner.study.space import SearchSpace

    space = SearchSpace(ranks=(8, 16), targets=("attention", "all"))
    budget = TrainBudget(train_tokens=2048, batch_size=2, seq_len=128, evaluations=1)
    least = TrainSetup(rank=8, targets="attention", batch=2, seq_len=128, gradient_checkpointing=True)
    shape = model_shape(str(tiny_model))
    sixteen, four = estimate(shape, least).total, estimate(shape, replace(least, quantized=True)).total
    assert four < sixteen
    settings = StudySettings(
        model=str(tiny_model), data=DataSettings("math"), trials=1, budget=budget, memory_budget=sixteen - 1
    )
    said = []
    options = StudyOptions(data_dir=data_dir, score_items=0, space=space, report=said.append)
    recommendation = run_study(settings, tmp_path / "run", options)
    assert recommendation.quantize == "nf4"
    assert "only 4-bit weights fit the memory budget" in recommendation.evidence["quantize"]
    assert any(isinstance(e, Stage) and "only QLoRA (4-bit NF4 weights) fits" in e.message for e in said)
    written = json.loads((tmp_path / "run" / "recommendation.json").read_text())
    assert written["quantize"] == "nf4"


def test_a_qlora_studys_preset_and_full_run_keep_4_bit(tiny_model, tmp_path):
    from advisor.presets import preset_from_dict

    preset = preset_from_dict(
        {
            "name": "q",
            "task": "math",
            "lora": {"rank": 8, "alpha": 16, "targets": "all"},
            "learning_rate": 1e-4,
            "quantize": "nf4",
        }
    )
    assert preset.recipe.quantize == "nf4" and preset.to_dict()["quantize"] == "nf4"
    sixteen = preset_from_dict({**preset.to_dict(), "quantize": None})
    assert "quantize" not in sixteen.to_dict()  # 16-bit presets are written as before
