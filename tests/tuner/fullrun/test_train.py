"""The full run: killed and resumed on a tiny model, its adapter, merged model, scores and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuner.errors import AdvisorError
from tuner.settings import DataSettings, LoraSettings, RunSettings, TrainingRecipe


def tiny_run(model: Path, task: str = "math", train_examples: int = 20, **recipe_changes: object) -> RunSettings:
    """Two epochs of 10 steps each: 20 examples of GSM8K at 64 tokens, batch 2."""
    recipe = TrainingRecipe(LoraSettings(rank=8, alpha=16, targets="all"), 1e-3, epochs=2, batch_size=2, seq_len=64)
    recipe = replace(recipe, **recipe_changes)
    return RunSettings(model=str(model), data=DataSettings(task), recipe=recipe, train_examples=train_examples)


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from tuner.settings import DataSettings, LoraSettings, RunSettings, TrainingRecipe
from tuner.fullrun.train import RunOptions, train_run

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)

recipe = TrainingRecipe(LoraSettings(8, 16, "all"), 1e-3, epochs=2, batch_size=2, seq_len=64, method=sys.argv[5])
settings = RunSettings(model=sys.argv[1], data=DataSettings("math"), recipe=recipe, train_examples=20)
train_run(settings, Path(sys.argv[2]), data_dir=Path(sys.argv[3]), options=RunOptions(save_steps=4),
          callbacks=[KillAt()])
"""


def adapter_weights(out_dir: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(out_dir / "adapter" / "adapter_model.safetensors")


def test_a_run_killed_mid_epoch_resumes_to_the_same_steps_and_weights(
    tiny_model: Path, data_dir: Path, tmp_path: Path
) -> None:
    import torch

    from tuner.fullrun.train import RunOptions, train_run

    whole = train_run(tiny_run(tiny_model), tmp_path / "whole", data_dir=data_dir, options=RunOptions(save_steps=4))
    whole = whole.to_json()

    killed_dir = tmp_path / "killed"
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", KILLED_RUN, str(tiny_model), str(killed_dir), str(data_dir), "13", "lora"]
    killed = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # Checkpoints every 4 steps and at the epoch's end (step 10), two kept: killed at step 13, 12 is the last.
    assert sorted(p.name for p in (killed_dir / "checkpoints").iterdir()) == ["checkpoint-10", "checkpoint-12"]
    assert not (killed_dir / "adapter").exists()

    resumed = train_run(tiny_run(tiny_model), killed_dir, data_dir=data_dir, options=RunOptions(save_steps=4)).to_json()
    assert resumed["training"]["resumed_from"] == "checkpoint-12"
    assert resumed["training"]["steps"] == whole["training"]["steps"] == 20
    assert resumed["training"]["epoch_losses"] == whole["training"]["epoch_losses"]
    expected, got = adapter_weights(tmp_path / "whole"), adapter_weights(killed_dir)
    assert expected.keys() == got.keys() and len(got) == 2 * 7 * 2  # A and B, 7 linear layers, 2 layers
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)
    assert not (killed_dir / "checkpoints").exists()  # the optimizer state goes once the adapter is saved


def test_full_fine_tuning_trains_every_weight_saves_a_model_and_resumes_after_kill_9(
    tiny_model: Path, data_dir: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tuner.fullrun.train import RunOptions, train_run

    full = tiny_run(tiny_model, method="full", learning_rate=1e-4)
    whole = train_run(full, tmp_path / "whole", data_dir=data_dir, options=RunOptions(save_steps=4)).to_json()
    assert whole["adapter"] is None and whole["model_dir"] == str(tmp_path / "whole" / "model")
    assert "lora" not in whole["settings"] and whole["settings"]["method"] == "full"

    killed_dir = tmp_path / "killed"
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", KILLED_RUN.replace("1e-3", "1e-4"), str(tiny_model), str(killed_dir)]
    killed = subprocess.run([*argv, str(data_dir), "13", "full"], env=environment, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (killed_dir / "model").exists()
    resumed = train_run(full, killed_dir, data_dir=data_dir, options=RunOptions(save_steps=4)).to_json()
    assert resumed["training"]["resumed_from"] == "checkpoint-12"
    assert resumed["training"]["steps"] == whole["training"]["steps"] == 20
    assert not (killed_dir / "checkpoints").exists() and not (killed_dir / "adapter").exists()

    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    expected = AutoModelForCausalLM.from_pretrained(tmp_path / "whole" / "model").state_dict()
    got = AutoModelForCausalLM.from_pretrained(killed_dir / "model").state_dict()
    assert got.keys() == base.keys()
    changed = [name for name in base if not torch.equal(base[name], got[name])]
    # Every weight trains: embeddings, norms and the head too (tied to the embeddings in this model or not).
    assert len(changed) == len(base), sorted(set(base) - set(changed))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)


def test_a_full_run_scores_the_base_before_training_rewrites_it(
    tiny_model: Path, data_dir: Path, tmp_path: Path
) -> None:
    from tuner.fullrun.train import RunOptions, train_run
    from tuner.scoring.benchmarks import EvalSettings

    scoring = EvalSettings(tasks=("hellaswag", "winogrande", "arc_challenge", "gsm8k"), limit=2)
    settings = tiny_run(tiny_model, method="full", learning_rate=1e-4, epochs=1, train_examples=8)
    lora_report = train_run(
        tiny_run(tiny_model, epochs=1, train_examples=8),
        tmp_path / "lora",
        data_dir=data_dir,
        options=RunOptions(scoring=scoring),
    )
    report = train_run(settings, tmp_path / "full", data_dir=data_dir, options=RunOptions(scoring=scoring))
    assert report.scores is not None and lora_report.scores is not None
    assert report.scores["base"] == lora_report.scores["base"]  # the same base model, scored before training
    markdown = (tmp_path / "full" / "report.md").read_text()
    assert "Full fine-tuning of every weight, learning rate 0.0001" in markdown
    assert f"Model (from_pretrained): `{tmp_path / 'full' / 'model'}`" in markdown

    with pytest.raises(AdvisorError, match="--merge merges a LoRA adapter"):
        train_run(settings, tmp_path / "merge", data_dir=data_dir, options=RunOptions(merge=True))
    assert not (tmp_path / "merge").exists()


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(tmp_path: Path) -> None:
    from tuner.fullrun.checkpoints import latest_checkpoint

    checkpoints = tmp_path / "checkpoints"
    for step in (4, 8):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    (checkpoints / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (checkpoints / "checkpoint-8" / "adapter_model.safetensors").write_bytes(b"half")  # killed mid-save
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-4"
    assert not (checkpoints / "checkpoint-8").exists()
    assert latest_checkpoint(tmp_path / "none") is None


def test_the_finished_run_scores_merges_and_reports(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tuner.fullrun.train import RunOptions, train_run
    from tuner.scoring.benchmarks import EvalSettings

    scoring = EvalSettings(tasks=("hellaswag", "winogrande", "arc_challenge", "gsm8k"), limit=2)
    options = RunOptions(save_steps=100, scoring=scoring, score_each_epoch=True, merge=True)
    events: list[object] = []
    report = train_run(
        tiny_run(tiny_model, epochs=1, train_examples=8),
        tmp_path,
        data_dir=data_dir,
        options=options,
        report=events.append,
    ).to_json()

    assert report["training"]["steps"] == 4
    assert set(report["scores"]) == {"base", "trained", "epoch 1"}
    for figures in report["scores"].values():
        assert set(figures["scores"]) == {"hellaswag", "winogrande", "arc_challenge", "gsm8k"}
        assert 0.0 <= figures["general"] <= 1.0
    base, trained = report["scores"]["base"], report["scores"]["trained"]
    assert report["change"]["general"] == pytest.approx(trained["general"] - base["general"])
    assert report["plot"] == "learning_vs_forgetting.png"
    assert (tmp_path / "learning_vs_forgetting.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "report.json").read_text())["scores"] == report["scores"]
    markdown = (tmp_path / "report.md").read_text()
    assert "| base |" in markdown and "| trained |" in markdown and "General mean change" in markdown

    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (8, 16, str(tiny_model))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert report["merged"] == str(tmp_path / "merged")

    # The same command again: nothing is trained twice, the report comes back.
    events.clear()
    again = train_run(tiny_run(tiny_model, epochs=1, train_examples=8), tmp_path, data_dir=data_dir, options=options)
    again = again.to_json()
    assert again["training"] == report["training"]
    assert again["scores"]["trained"] == report["scores"]["trained"]


@pytest.mark.parametrize("variant", ["pissa", "loraplus", "dora"])
def test_a_variants_adapter_loads_on_the_original_base_model_as_it_trained(
    tiny_model: Path, data_dir: Path, tmp_path: Path, variant: str
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, TrainerCallback

    from tuner.fullrun.train import train_run

    tokens = torch.arange(1, 33).unsqueeze(0)

    class TrainedLogits(TrainerCallback):
        """The trained model's logits on a fixed row, as training ends (PiSSA's still on its rewritten base)."""

        def on_train_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
            with torch.no_grad():
                self.logits = kwargs["model"](input_ids=tokens).logits  # type: ignore[operator]

    trained = TrainedLogits()
    settings = tiny_run(tiny_model, epochs=1, train_examples=8, lora=LoraSettings(8, 16, "all", variant=variant))
    report = train_run(settings, tmp_path, data_dir=data_dir, callbacks=[trained])
    assert report.settings["lora"]["variant"] == variant
    assert json.loads((tmp_path / "train_settings.json").read_text())["lora"]["variant"] == variant

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        base_logits = base(input_ids=tokens).logits
        adapted = PeftModel.from_pretrained(base, tmp_path / "adapter")
        # PiSSA's conversion sums in another order (W + s(A B - A0 B0), not W - s A0 B0 + s A B): float32 rounding
        torch.testing.assert_close(adapted(input_ids=tokens).logits, trained.logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(trained.logits, base_logits)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    if variant == "pissa":  # converted to plain LoRA: A B - A0 B0 at twice the rank
        assert (config["r"], config["lora_alpha"], config["init_lora_weights"]) == (16, 32, True)
        assert not (tmp_path / "pissa").exists()
    assert config["use_dora"] is (variant == "dora")


def test_other_settings_in_the_same_directory_are_refused(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    from tuner.fullrun.train import RunOptions, train_run

    train_run(tiny_run(tiny_model, epochs=1, train_examples=4), tmp_path, data_dir=data_dir, options=RunOptions())
    with pytest.raises(AdvisorError, match=r"other settings \(learning_rate differ\)"):
        train_run(tiny_run(tiny_model, epochs=1, train_examples=4, learning_rate=5e-4), tmp_path, data_dir=data_dir)


def test_run_settings_reject_bad_values(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        tiny_run(tiny_model, epochs=0)
    with pytest.raises(ValueError, match="learning rate must be between 0 and 1, got 2"):
        tiny_run(tiny_model, learning_rate=2)
    with pytest.raises(ValueError, match="custom task needs --data"):
        tiny_run(tiny_model, task="custom")


def test_a_run_compiled_once_its_first_steps_show_it_repays_trains_as_an_eager_one(
    tiny_model: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from tuner.events import Stage
    from tuner.fullrun.train import train_run
    from tuner.training import compilation

    if compilation.compiler_missing("cpu") is not None:
        pytest.skip("torch.compile needs a C++ compiler on the CPU")
    monkeypatch.setenv(compilation.COMPILE_VARIABLE, "off")
    train_run(tiny_run(tiny_model), tmp_path / "eager", data_dir=data_dir)
    # A warm-up this cheap repays itself on any run: auto compiles after the timed steps.
    monkeypatch.setenv(compilation.COMPILE_VARIABLE, "auto")
    monkeypatch.setitem(compilation.COSTS, "cpu", compilation.CompileCost(warmup_seconds=1e-6, step_saving=0.5))
    stages: list[str] = []
    train_run(
        tiny_run(tiny_model),
        tmp_path / "compiled",
        data_dir=data_dir,
        report=lambda event: stages.append(event.message) if isinstance(event, Stage) else None,
    )
    assert any(s.startswith("compiling the 2 decoder layers: 18 steps left") for s in stages), stages
    curves = [
        json.loads((tmp_path / run / "adapter" / "training.json").read_text())["loss_curve"]
        for run in ("eager", "compiled")
    ]
    assert [step for step, _ in curves[1]] == [step for step, _ in curves[0]] == list(range(1, 21))
    for (_, want), (_, got) in zip(*curves, strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    expected, got = adapter_weights(tmp_path / "eager"), adapter_weights(tmp_path / "compiled")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_run(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    from tuner.fullrun.train import RunOptions, train_run

    curves = []
    for checkpointing in (False, True):
        out = tmp_path / f"checkpointing-{checkpointing}"
        options = RunOptions(save_steps=100, gradient_checkpointing=checkpointing)
        train_run(tiny_run(tiny_model), out, data_dir=data_dir, options=options)
        curves.append(json.loads((out / "adapter" / "training.json").read_text())["loss_curve"])
    plain, recomputed = curves
    assert len(plain) == len(recomputed) == 20
    assert all(a[1] == pytest.approx(b[1], abs=1e-4) for a, b in zip(plain, recomputed, strict=True))
