"""The LLaMA-Factory export: llama-factory.yaml in LLaMA-Factory's own key names."""

from __future__ import annotations

import pytest
import yaml

from advisor.exports import DATA_PLACEHOLDER, export_preset, read_export
from advisor.presets import load_preset
from tests.advisor.exports.shared import (
    MLP,
    PRESETS,
    VARIANT_PRESETS,
    check_header,
    comments,
    exported_fields,
    own_keys,
    variant_keys,
)
from tuner.errors import AdvisorError

# What LLaMA-Factory calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4, 4 epochs,
# batch 2 x 512, 10 % warm-up, bf16 on a GPU, no gradient checkpointing, Llama-2); sources in
# advisor/exports/llama_factory.py's docstring.
OWN_KEYS = {
    "model_name_or_path": "meta-llama/Llama-2-7b-hf",
    "flash_attn": "sdpa",
    "disable_gradient_checkpointing": True,
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "lora_target": "all",
    "learning_rate": 1e-4,
    "num_train_epochs": 4.0,
    "per_device_train_batch_size": 2,
    "cutoff_len": 512,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "dataset": DATA_PLACEHOLDER,
    "template": "llama2",
    "output_dir": "saves/math-24gib",
    "bf16": True,
    "use_cpu": False,
}
# code-cpu: SmolLM2-135M-Instruct in float32 on the CPU.
CPU_KEYS = {
    "model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "flash_attn": "sdpa",
    "disable_gradient_checkpointing": True,
    "template": "smollm2",
    "bf16": False,
    "use_cpu": True,
}


def test_llama_factory_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "llama-factory", "llamafactory-cli train llama-factory.yaml", headed="llama-factory.yaml")


def test_llama_factory_export_uses_llama_factorys_own_key_names(tmp_path):
    assert own_keys(exported_fields(tmp_path, "llama-factory"), OWN_KEYS) == OWN_KEYS


def test_llama_factory_cpu_preset_trains_in_float32_on_the_cpu_with_smollm2s_template(tmp_path):
    fields = exported_fields(tmp_path, "llama-factory", load_preset("code-cpu"))
    assert own_keys(fields, CPU_KEYS) == CPU_KEYS
    text = (tmp_path / "llama-factory.yaml").read_text(encoding="utf-8")
    assert "# train: float32 on the CPU: use_cpu true, bf16 false" in text


def test_a_llama_factory_file_without_the_switches_reads_as_llama_factorys_defaults(tmp_path):
    fields = exported_fields(tmp_path, "llama-factory")
    for key in ("disable_gradient_checkpointing", "use_cpu", "bf16"):
        del fields[key]
    (tmp_path / "llama-factory.yaml").write_text(yaml.safe_dump(fields), encoding="utf-8")
    values = read_export(tmp_path)
    assert (values["hardware"], values["gradient_checkpointing"]) == ("gpu", True)  # checkpointing on by default


def test_llama_factory_leaves_the_template_to_the_tokenizer_for_a_model_it_does_not_know(tmp_path):
    fields = exported_fields(tmp_path, "llama-factory", MLP)
    assert "template" not in fields
    assert "reads your model's own chat template from its tokenizer" in comments(tmp_path / "llama-factory.yaml")


def test_llama_factory_section_comments_fit_110_columns(tmp_path):
    export_preset(load_preset("code-cpu"), "llama-factory", tmp_path, origin="a test")
    body = (tmp_path / "llama-factory.yaml").read_text(encoding="utf-8").split("\n\n", 1)[1]
    assert max(len(line) for line in body.splitlines()) <= 110


VARIANT_KEYS = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "pissa": {"pissa_init": True, "pissa_iter": 4, "pissa_convert": True},
    "loraplus": {"loraplus_lr_ratio": 16},
}


@pytest.mark.parametrize("variant", list(VARIANT_KEYS))
def test_llama_factory_sets_each_variant_in_its_own_keys(tmp_path, variant):
    fields = exported_fields(tmp_path, "llama-factory", VARIANT_PRESETS[variant])
    assert variant_keys(fields, VARIANT_KEYS) == VARIANT_KEYS[variant]
    assert variant_keys(exported_fields(tmp_path / "plain", "llama-factory"), VARIANT_KEYS) == {}


# QLoRA in LLaMA-Factory's QuantizationArguments: 4-bit bitsandbytes, NF4, double quantisation.
QLORA_KEYS = {
    "quantization_bit": 4,
    "quantization_method": "bnb",
    "quantization_type": "nf4",
    "double_quantization": True,
}


@pytest.mark.parametrize(("key", "plain"), [("qlora", "math-24gib"), ("qlora-cpu", "math-cpu")])
def test_llama_factory_qlora_is_4_bit_bitsandbytes_nf4_double_quantised(tmp_path, key, plain):
    fields = exported_fields(tmp_path, "llama-factory", PRESETS[key])
    assert own_keys(fields, QLORA_KEYS) == QLORA_KEYS and fields["finetuning_type"] == "lora"
    assert read_export(tmp_path)["quantize"] == "nf4"
    assert "quantization_bit 4 with bitsandbytes, NF4 and double_quantization" in comments(
        tmp_path / "llama-factory.yaml"
    )
    assert not set(QLORA_KEYS) & set(exported_fields(tmp_path / "plain", "llama-factory", load_preset(plain)))


def test_a_llama_factory_file_with_another_quantisation_is_refused(tmp_path):
    fields = exported_fields(tmp_path, "llama-factory", PRESETS["qlora"])
    (tmp_path / "llama-factory.yaml").write_text(yaml.safe_dump({**fields, "quantization_bit": 8}), encoding="utf-8")
    with pytest.raises(AdvisorError, match="LoRA Advisor's QLoRA is 4-bit bitsandbytes NF4 with double quantisation"):
        read_export(tmp_path)
    del fields["quantization_type"], fields["double_quantization"]  # LLaMA-Factory's defaults: NF4, double quantised
    (tmp_path / "llama-factory.yaml").write_text(yaml.safe_dump(fields), encoding="utf-8")
    assert read_export(tmp_path)["quantize"] == "nf4"
