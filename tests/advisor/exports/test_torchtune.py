"""The torchtune export: torchtune.yaml with torchtune's builders and names, its device, dtype, checkpointing and
warm-up steps from the preset, and no MLP-only preset."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from advisor.exports import carried_fields, export_preset, read_export
from advisor.exports.base import warmup_steps, warmup_steps_note
from advisor.presets import load_preset, shipped_presets
from tests.advisor.exports.shared import (
    ATTENTION,
    MLP,
    PRESETS,
    VARIANT_PRESETS,
    check_header,
    comments,
    exported_fields,
    own_keys,
    qlora,
)
from tuner.errors import AdvisorError

# What torchtune calls some settings of math-24gib (lr 1e-4, 4 epochs, batch 2); sources in
# advisor/exports/torchtune.py's docstring.
OWN_KEYS = {
    "epochs": 4,
    "batch_size": 2,
    "optimizer": {"_component_": "torch.optim.AdamW", "lr": 1e-4, "weight_decay": 0.0},
}


def test_torchtune_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    usage = "tune run lora_finetune_single_device --config torchtune.yaml"
    check_header(tmp_path, "torchtune", usage, headed="torchtune.yaml")


def test_torchtune_export_uses_torchtunes_own_key_names(tmp_path):
    assert own_keys(exported_fields(tmp_path, "torchtune"), OWN_KEYS) == OWN_KEYS


def test_torchtune_names_o_proj_output_proj_and_uses_the_llama2_builder(tmp_path):
    fields = exported_fields(tmp_path, "torchtune")
    assert fields["model"] == {
        "_component_": "torchtune.models.llama2.lora_llama2_7b",
        "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"],
        "apply_lora_to_mlp": True,
        "apply_lora_to_output": False,
        "lora_rank": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
    }
    assert fields["tokenizer"]["max_seq_len"] == 512 and fields["dataset"]["packed"] is True
    assert fields["lr_scheduler"]["_component_"].endswith("get_cosine_schedule_with_warmup")


def test_a_model_torchtune_has_no_builder_for_gets_an_example_to_replace(tmp_path):
    export_preset(ATTENTION, "torchtune", tmp_path, origin="a test")
    text = (tmp_path / "torchtune.yaml").read_text(encoding="utf-8")
    assert "torchtune has no builder for smollm2-135m-instruct" in text and "replace _component_" in text
    assert yaml.safe_load(text)["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2_1b"


def test_torchtune_refuses_an_mlp_only_preset(tmp_path):
    with pytest.raises(AdvisorError, match="MLP-only preset cannot be exported to torchtune"):
        export_preset(MLP, "torchtune", tmp_path / "out", origin="a test")
    assert not (tmp_path / "out").exists()


def test_torchtune_sets_dora_and_says_it_has_no_rslora(tmp_path):
    assert exported_fields(tmp_path / "dora", "torchtune", VARIANT_PRESETS["dora"])["model"]["use_dora"] is True
    fields = exported_fields(tmp_path / "rslora", "torchtune", VARIANT_PRESETS["rslora"])
    assert "use_dora" not in fields["model"] and fields["model"]["lora_alpha"] == 4  # plain LoRA's alpha
    header = comments(tmp_path / "rslora" / "torchtune.yaml")
    # rsLoRA scales by alpha / sqrt(r) = 4 / sqrt(8): plain LoRA's alpha / r is the same at alpha 4 sqrt(8)
    assert (
        "torchtune has no setting for rank-stabilised LoRA" in header
        and "alpha = 11.31 scales as rsLoRA does" in header
    )


@pytest.mark.parametrize("name", shipped_presets())
def test_torchtune_export_of_each_shipped_preset_reads_back_as_the_preset(tmp_path, name):
    preset = load_preset(name)
    fields = exported_fields(tmp_path, "torchtune", preset)
    assert read_export(tmp_path) == carried_fields(preset, "torchtune")
    # the warm-up, not carried (a step count), is the preset's share of its training examples' steps
    assert fields["lr_scheduler"]["num_warmup_steps"] == warmup_steps(preset)
    assert fields["enable_activation_checkpointing"] is preset.gradient_checkpointing
    assert fields["enable_activation_offloading"] is False


@pytest.mark.parametrize("preset", [ATTENTION, *VARIANT_PRESETS.values()], ids=lambda preset: preset.name)
def test_torchtune_export_of_a_custom_preset_reads_back_as_the_preset(tmp_path, preset):
    fields = exported_fields(tmp_path, "torchtune", preset)
    assert read_export(tmp_path) == carried_fields(preset, "torchtune")
    # ATTENTION names no data size: 5 % of 5 epochs x ceil(1,000 assumed examples / batch 3) = 83.5 steps
    assert fields["lr_scheduler"]["num_warmup_steps"] == warmup_steps(preset) == 84


def test_cpu_presets_train_on_the_cpu_in_fp32_with_smollm2s_chatml(tmp_path):
    fields = exported_fields(tmp_path, "torchtune", load_preset("math-cpu"))
    assert (fields["device"], fields["dtype"], fields["log_peak_memory_stats"]) == ("cpu", "fp32", False)
    assert fields["tokenizer"]["prompt_template"] == "torchtune.data.ChatMLTemplate"
    assert read_export(tmp_path)["hardware"] == "cpu"
    text = comments(tmp_path / "torchtune.yaml")
    assert "a CPU in float32, activation checkpointing off" in text and "no attention setting" in text


def test_gpu_presets_train_on_cuda_in_bf16_with_llama2s_chat_template(tmp_path):
    preset = load_preset("code-24gib")
    fields = exported_fields(tmp_path, "torchtune", preset)
    assert (fields["device"], fields["dtype"], fields["log_peak_memory_stats"]) == ("cuda", "bf16", True)
    assert fields["tokenizer"]["prompt_template"] == "torchtune.models.llama2.Llama2ChatTemplate"
    # 10 % of 4 epochs x 55,000 steps (110,000 examples / batch 2), and the comment says how it was counted
    assert fields["lr_scheduler"]["num_warmup_steps"] == 22_000
    assert warmup_steps_note(preset) in comments(tmp_path / "torchtune.yaml")


def test_torchtune_sets_activation_checkpointing_where_the_preset_was_sized_with_it(tmp_path):
    preset = replace(load_preset("math-24gib"), gradient_checkpointing=True)
    fields = exported_fields(tmp_path, "torchtune", preset)
    assert fields["enable_activation_checkpointing"] is True
    assert read_export(tmp_path)["gradient_checkpointing"] is True


def test_torchtune_refuses_to_read_a_device_and_dtype_no_preset_trains_in(tmp_path):
    export_preset(load_preset("math-cpu"), "torchtune", tmp_path, origin="a test")
    path = tmp_path / "torchtune.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("dtype: fp32", "dtype: bf16"), encoding="utf-8")
    with pytest.raises(AdvisorError, match="device cpu with dtype bf16"):
        read_export(tmp_path)


@pytest.mark.parametrize(
    ("key", "builder"),
    [("qlora", "llama2.qlora_llama2_7b"), ("qlora-cpu", "llama3_2.qlora_llama3_2_1b")],
)
def test_torchtune_qlora_is_the_lora_builders_qlora_twin(tmp_path, key, builder):
    preset = PRESETS[key]
    fields = exported_fields(tmp_path, "torchtune", preset)
    assert fields["model"]["_component_"] == f"torchtune.models.{builder}"
    assert read_export(tmp_path) == carried_fields(preset, "torchtune") and read_export(tmp_path)["quantize"] == "nf4"
    assert "the base model's linear weights in torchao's NF4" in comments(tmp_path / "torchtune.yaml")
    plain = exported_fields(
        tmp_path / "plain", "torchtune", replace(preset, recipe=replace(preset.recipe, quantize=None))
    )
    assert plain["model"]["_component_"] == f"torchtune.models.{builder.replace('qlora_', 'lora_')}"


def test_a_qlora_dora_preset_keeps_use_dora_on_the_qlora_builder(tmp_path):
    model = exported_fields(tmp_path, "torchtune", qlora(VARIANT_PRESETS["dora"]))["model"]
    assert (model["_component_"], model["use_dora"]) == ("torchtune.models.llama3_2.qlora_llama3_2_1b", True)


def test_a_builder_without_a_qlora_twin_stays_lora_and_the_file_says_so(tmp_path, monkeypatch):
    from advisor.exports import torchtune

    monkeypatch.setattr(torchtune, "QLORA_BUILDERS", {})
    fields = exported_fields(tmp_path, "torchtune", PRESETS["qlora"])
    assert fields["model"]["_component_"] == "torchtune.models.llama2.lora_llama2_7b"  # no builder guessed at
    assert "torchtune has no QLoRA twin of lora_llama2_7b, so this file trains 16-bit LoRA" in comments(
        tmp_path / "torchtune.yaml"
    )
    assert read_export(tmp_path)["quantize"] is None
