"""`advisor spectrum` on a tiny random Llama: an adapter, a model with a known low-rank change, a run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

LORA_RANK = 4
CHANGE_RANK = 2


def perturbed_copy(model_dir: Path, target: Path, rank: int | None) -> Path:
    """The model with every attention and MLP weight of its layers changed: by a rank-`rank` product, or full rank."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if weight.ndim == 2 and ".layers." in name and name.endswith("_proj.weight"):
                out_features, in_features = weight.shape
                inner = rank or min(out_features, in_features)
                left = torch.randn(out_features, inner, generator=generator)
                weight.add_(0.05 * left @ torch.randn(inner, in_features, generator=generator))
    model.save_pretrained(target)
    return target


def lora_adapter(model_dir: Path, target: Path) -> Path:
    """A LoRA adapter of rank LORA_RANK on every linear layer, with random (non-zero) A and B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(target)
    return target


def other_model(target: Path) -> Path:
    """A Llama with a wider hidden size (48, not 32) than the tiny model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    LlamaForCausalLM(config).save_pretrained(target)
    return target


def other_model_adapter(model_dir: Path, target: Path) -> Path:
    """A LoRA adapter on q_proj and up_proj, made for `model_dir`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = LoraConfig(r=LORA_RANK, lora_alpha=8, target_modules=["q_proj", "up_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spectrum-sources")
    found = {
        "adapter": lora_adapter(tiny_model, root / "adapter"),
        "low_rank": perturbed_copy(tiny_model, root / "low-rank", CHANGE_RANK),
        "full_rank": perturbed_copy(tiny_model, root / "full-rank", None),
        "other_model": other_model(root / "other-model"),
    }
    found["other_adapter"] = other_model_adapter(found["other_model"], root / "other-adapter")
    return found


def spectrum_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("spectrum.*"))


def test_adapter_ranks_are_at_most_its_rank(capsys, tmp_path, tiny_model, sources):
    code, out, err = run_cli(
        capsys, "spectrum", "--model", str(tiny_model), "--adapter", str(sources["adapter"]), "--out", str(tmp_path)
    )
    assert code == 0, err
    report = json.loads((tmp_path / "spectrum.json").read_text())
    assert (tmp_path / "spectrum.png").read_bytes()[:4] == b"\x89PNG"
    assert report["kind"] == "adapter" and report["lora_rank"] == LORA_RANK
    assert len(report["matrices"]) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert all(1 <= matrix["rank_90"] <= LORA_RANK for matrix in report["matrices"])
    assert f"LoRA r={LORA_RANK}" in out and "does not apply to an adapter" in out
    assert f"wrote {tmp_path / 'spectrum.json'} and {tmp_path / 'spectrum.png'}" in out


def test_merged_model_with_a_rank_2_change(capsys, tmp_path, tiny_model, sources):
    merged = shutil.copytree(sources["low_rank"], tmp_path / "merged")
    code, out, err = run_cli(capsys, "spectrum", "--model", str(tiny_model), "--merged", str(merged), "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["files"] == [str(merged / "spectrum.json"), str(merged / "spectrum.png")]
    written = json.loads((merged / "spectrum.json").read_text())
    assert written["kind"] == "merged" and written["lora_rank"] is None
    assert {(m["layer"], m["module"]) for m in written["matrices"]} == {
        (layer, module) for layer in (0, 1) for module in ("q_proj", "k_proj", "v_proj", "o_proj")
    } | {(layer, module) for layer in (0, 1) for module in ("gate_proj", "up_proj", "down_proj")}
    assert all(1 <= matrix["rank_90"] <= CHANGE_RANK for matrix in written["matrices"])


def test_full_run_reads_model_before_adapter(capsys, tmp_path, tiny_model, sources):
    run_dir = tmp_path / "run"
    shutil.copytree(sources["full_rank"], run_dir / "model")
    shutil.copytree(sources["adapter"], run_dir / "adapter")
    code, out, err = run_cli(capsys, "spectrum", "--model", str(tiny_model), "--full-run", str(run_dir))
    assert code == 0, err
    report = json.loads((run_dir / "spectrum.json").read_text())
    assert report["kind"] == "full" and report["source"] == str(run_dir / "model")
    assert f"ΔW of the fine-tuned model {run_dir / 'model'} against {tiny_model}" in out
    # A random full-rank change needs far more than a LoRA's rank (the smallest matrices here have rank 16).
    assert min(matrix["rank_90"] for matrix in report["matrices"]) > LORA_RANK
    assert (run_dir / "spectrum.png").is_file()


def test_full_run_of_a_lora_run_reads_its_adapter(capsys, tmp_path, tiny_model, sources):
    run_dir = tmp_path / "run"
    shutil.copytree(sources["adapter"], run_dir / "adapter")
    code, _, err = run_cli(capsys, "spectrum", "--model", str(tiny_model), "--full-run", str(run_dir), "--json")
    assert code == 0, err
    assert json.loads((run_dir / "spectrum.json").read_text())["lora_rank"] == LORA_RANK


def refused(capsys, *args: str) -> str:
    """The one stderr line of a refused `advisor spectrum ARGS`."""
    code, out, err = run_cli(capsys, "spectrum", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_adapter_for_another_model_is_refused_and_writes_nothing(capsys, tmp_path, tiny_model, sources):
    adapter = shutil.copytree(sources["other_adapter"], tmp_path / "adapter")
    err = refused(capsys, "--model", str(tiny_model), "--adapter", str(adapter))
    assert "does not fit the base model" in err
    assert "model.layers.0.self_attn.q_proj is 48x48 in the adapter" in err and "32x32 in the base model" in err
    assert spectrum_files(adapter) == []


def test_a_model_directory_is_not_an_adapter(capsys, tiny_model, sources):
    err = refused(capsys, "--model", str(tiny_model), "--adapter", str(sources["low_rank"]))
    assert "not a PEFT adapter directory" in err
    assert spectrum_files(sources["low_rank"]) == []


def test_other_bad_sources_are_refused(capsys, tmp_path, tiny_model, sources):
    err = refused(capsys, "--model", str(tiny_model), "--merged", str(tmp_path / "missing"))
    assert "directory not found" in err
    err = refused(capsys, "--model", str(tiny_model), "--merged", str(sources["adapter"]))
    assert "is a PEFT adapter, not a model" in err
    err = refused(capsys, "--model", str(tiny_model), "--full-run", str(tmp_path))
    assert "holds neither model/ (full fine-tuning) nor adapter/" in err
    err = refused(capsys, "--model", str(tiny_model), "--merged", str(sources["other_model"]), "--out", str(tmp_path))
    assert "does not fit the base model" in err and "is 48x48 there but 32x32 in the base model" in err
    code, _, err = run_cli(capsys, "spectrum", "--model", str(tiny_model))
    assert code == 2 and "one of the arguments --adapter --merged --full-run is required" in err
    assert spectrum_files(tmp_path) == []
