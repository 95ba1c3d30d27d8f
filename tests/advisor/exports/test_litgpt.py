"""The LitGPT export: litgpt-lora.yaml in LitGPT's own key names, with the keys finetune_lora takes: its
precision from the preset's hardware, its warm-up in optimizer steps, no clipping or warm-up fraction."""

from __future__ import annotations

from dataclasses import replace

import pytest

from advisor.exports import carried_fields, export_preset, read_export
from advisor.exports.base import warmup_steps, warmup_steps_note
from advisor.presets import load_preset, shipped_presets
from tests.advisor.exports.shared import (
    ATTENTION,
    PRESETS,
    VARIANT_PRESETS,
    check_header,
    comments,
    exported_fields,
    own_keys,
)
from tuner.errors import AdvisorError

# What LitGPT calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4); sources in
# advisor/exports/litgpt.py's docstring.
OWN_KEYS = {
    "checkpoint_dir": "checkpoints/meta-llama/Llama-2-7b-hf",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_query": True,
    "lora_key": True,
    "lora_value": True,
    "lora_projection": True,
    "lora_mlp": True,
    "lora_head": False,
    "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-4, "weight_decay": 0.0}},
}


def test_litgpt_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "litgpt", "litgpt finetune_lora --config litgpt-lora.yaml", headed="litgpt-lora.yaml")


def test_litgpt_export_uses_litgpts_own_key_names(tmp_path):
    assert own_keys(exported_fields(tmp_path, "litgpt"), OWN_KEYS) == OWN_KEYS


def test_litgpt_warmup_is_in_optimizer_steps_with_none_of_the_keys_finetune_lora_refuses(tmp_path):
    preset = load_preset("math-24gib")
    train = exported_fields(tmp_path, "litgpt", preset)["train"]
    # finetune_lora's validate_args refuses max_norm and lr_warmup_fraction; its scheduler divides by the steps:
    # 10 % of 4 epochs x 197,500 steps (395,000 examples / batch 2)
    assert train == {
        "global_batch_size": 2,
        "micro_batch_size": 2,
        "epochs": 4,
        "max_seq_length": 512,
        "lr_warmup_steps": 79_000,
    }
    text = comments(tmp_path / "litgpt-lora.yaml")
    assert warmup_steps_note(preset) in text
    assert "no setting for gradient checkpointing" in text and "none for gradient clipping" in text


def test_litgpt_has_no_variant_and_says_so(tmp_path):
    fields = exported_fields(tmp_path, "litgpt", VARIANT_PRESETS["dora"])
    assert not any("dora" in key for key in fields)
    header = comments(tmp_path / "litgpt-lora.yaml")
    assert "LitGPT has no setting for DoRA (weight-decomposed LoRA), so this file trains plain LoRA" in header


@pytest.mark.parametrize("name", shipped_presets())
def test_litgpt_export_of_each_shipped_preset_reads_back_as_the_preset(tmp_path, name):
    preset = load_preset(name)
    fields = exported_fields(tmp_path, "litgpt", preset)
    assert read_export(tmp_path) == carried_fields(preset, "litgpt")
    # the warm-up, not carried (a step count), is the preset's share of its training examples' steps
    assert fields["train"]["lr_warmup_steps"] == warmup_steps(preset)
    assert fields["precision"] == ("32-true" if preset.on_cpu else "bf16-true")
    style = {"smollm2-135m-instruct": "smollm2", "meta-llama/Llama-2-7b-hf": "llama2"}[preset.model]
    assert fields["data"]["init_args"]["prompt_style"] == style


@pytest.mark.parametrize("preset", [ATTENTION, *VARIANT_PRESETS.values()], ids=lambda preset: preset.name)
def test_litgpt_export_of_a_custom_preset_reads_back_as_the_preset(tmp_path, preset):
    fields = exported_fields(tmp_path, "litgpt", preset)
    assert read_export(tmp_path) == carried_fields(preset, "litgpt")
    # ATTENTION names no data size: 5 % of 5 epochs x ceil(1,000 assumed examples / batch 3) = 83.5 steps
    assert fields["train"]["lr_warmup_steps"] == warmup_steps(preset) == 84


def test_cpu_presets_train_in_32_true_and_gpu_presets_in_bf16_true(tmp_path):
    assert exported_fields(tmp_path / "cpu", "litgpt", load_preset("code-cpu"))["precision"] == "32-true"
    assert read_export(tmp_path / "cpu")["hardware"] == "cpu"
    assert exported_fields(tmp_path / "gpu", "litgpt", load_preset("code-80gib"))["precision"] == "bf16-true"
    assert read_export(tmp_path / "gpu")["hardware"] == "gpu"


def test_litgpt_says_a_preset_sized_with_gradient_checkpointing_needs_more_memory_there(tmp_path):
    exported_fields(tmp_path, "litgpt", replace(load_preset("math-24gib"), gradient_checkpointing=True))
    assert "sized with gradient checkpointing, so it needs more memory here" in comments(tmp_path / "litgpt-lora.yaml")


def test_a_preset_without_warmup_gets_one_step_which_litgpts_scheduler_divides_by(tmp_path):
    preset = replace(ATTENTION, recipe=replace(ATTENTION.recipe, warmup_ratio=0.0))
    assert exported_fields(tmp_path, "litgpt", preset)["train"]["lr_warmup_steps"] == 1
    assert "(1, not 0: finetune_lora's scheduler divides by it)" in comments(tmp_path / "litgpt-lora.yaml")


def test_litgpt_refuses_to_read_a_precision_no_preset_trains_in(tmp_path):
    exported_fields(tmp_path, "litgpt", load_preset("math-cpu"))
    path = tmp_path / "litgpt-lora.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("32-true", "16-mixed"), encoding="utf-8")
    with pytest.raises(AdvisorError, match="precision 16-mixed"):
        read_export(tmp_path)


def test_litgpt_qlora_quantizes_with_bitsandbytes_nf4_double_quantised_in_bf16_true(tmp_path):
    fields = exported_fields(tmp_path, "litgpt", PRESETS["qlora"])
    # finetune_lora's setup refuses quantisation with a mixed precision: bf16-true is the dtype it computes in
    assert (fields["quantize"], fields["precision"]) == ("bnb.nf4-dq", "bf16-true")
    assert (
        read_export(tmp_path) == carried_fields(PRESETS["qlora"], "litgpt")
        and read_export(tmp_path)["quantize"] == "nf4"
    )
    assert "bitsandbytes' PagedAdamW" in comments(tmp_path / "litgpt-lora.yaml")
    assert "quantize" not in exported_fields(tmp_path / "plain", "litgpt", load_preset("math-24gib"))


def test_litgpt_refuses_a_cpu_qlora_preset_which_lightning_cannot_quantize(tmp_path):
    with pytest.raises(AdvisorError, match="Fabric refuses without a CUDA GPU"):
        export_preset(PRESETS["qlora-cpu"], "litgpt", tmp_path / "out", origin="a test")
    assert not (tmp_path / "out").exists()


def test_litgpt_refuses_to_read_another_quantisation(tmp_path):
    exported_fields(tmp_path, "litgpt", PRESETS["qlora"])
    path = tmp_path / "litgpt-lora.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("bnb.nf4-dq", "bnb.fp4"), encoding="utf-8")
    with pytest.raises(AdvisorError, match=r"quantize bnb.fp4: LoRA Advisor's QLoRA is bnb.nf4-dq"):
        read_export(tmp_path)
