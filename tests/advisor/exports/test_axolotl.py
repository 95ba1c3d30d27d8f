"""The axolotl export: axolotl.yaml in axolotl's own key names."""

from __future__ import annotations

import pytest
import yaml

from advisor.exports import DATA_PLACEHOLDER, export_preset, read_export
from advisor.exports.axolotl import LLAMA2_CHAT_TEMPLATE, LORA_KERNELS
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

# What axolotl calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4, 4 epochs,
# batch 2 x 512, 10 % warm-up, bf16 on a GPU, no gradient checkpointing, Llama-2); sources in
# advisor/exports/axolotl.py's docstring.
OWN_KEYS = {
    "base_model": "meta-llama/Llama-2-7b-hf",
    "adapter": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "lora_target_linear": True,
    "learning_rate": 1e-4,
    "num_epochs": 4,
    "micro_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "sequence_len": 512,
    "sample_packing": True,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "datasets": [{"path": DATA_PLACEHOLDER, "type": "chat_template"}],
    "chat_template": "jinja",
    "bf16": True,
    "fp16": False,
    "attn_implementation": "sdpa",
    "gradient_checkpointing": False,
}
# code-cpu: SmolLM2-135M-Instruct in float32 on the CPU, without the Triton LoRA kernels.
CPU_KEYS = {
    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "chat_template": "tokenizer_default",
    "bf16": False,
    "fp16": False,
    "attn_implementation": "sdpa",
    "gradient_checkpointing": False,
    **dict.fromkeys(LORA_KERNELS, False),
}


def test_axolotl_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "axolotl", "axolotl train axolotl.yaml", headed="axolotl.yaml")


def test_axolotl_export_uses_axolotls_own_key_names(tmp_path):
    fields = exported_fields(tmp_path, "axolotl")
    assert own_keys(fields, OWN_KEYS) == OWN_KEYS
    assert not set(LORA_KERNELS) & set(fields)  # left to axolotl on a GPU
    assert "flash_attention" not in fields and "sdp_attention" not in fields  # deprecated in axolotl 0.19


def test_axolotl_cpu_preset_trains_in_float32_with_the_models_own_template_and_no_gpu_kernels(tmp_path):
    fields = exported_fields(tmp_path, "axolotl", load_preset("code-cpu"))
    assert own_keys(fields, CPU_KEYS) == CPU_KEYS
    assert "chat_template_jinja" not in fields


def test_axolotl_gives_llama_2_the_chat_models_template(tmp_path):
    fields = exported_fields(tmp_path, "axolotl")
    assert fields["chat_template_jinja"] == LLAMA2_CHAT_TEMPLATE  # survives YAML's line folding
    sandbox = pytest.importorskip("jinja2.sandbox")
    turn = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    template = sandbox.ImmutableSandboxedEnvironment().from_string(fields["chat_template_jinja"])
    assert template.render(messages=turn, bos_token="<s>", eos_token="</s>") == "<s>[INST] Hi [/INST] Hello </s>"


def test_an_axolotl_file_without_the_switches_reads_as_axolotls_defaults(tmp_path):
    fields = exported_fields(tmp_path, "axolotl", load_preset("code-cpu"))
    for key in ("bf16", "fp16", "gradient_checkpointing"):
        del fields[key]
    (tmp_path / "axolotl.yaml").write_text(yaml.safe_dump(fields), encoding="utf-8")
    values = read_export(tmp_path)
    assert (values["hardware"], values["gradient_checkpointing"]) == ("gpu", False)  # bf16: auto, checkpointing off


def test_axolotl_uses_the_tokenizers_template_for_a_model_it_does_not_know(tmp_path):
    assert exported_fields(tmp_path, "axolotl", MLP)["chat_template"] == "tokenizer_default"


def test_axolotl_section_comments_fit_110_columns(tmp_path):
    export_preset(load_preset("math-24gib"), "axolotl", tmp_path, origin="a test")
    body = (tmp_path / "axolotl.yaml").read_text(encoding="utf-8").split("\n\n", 1)[1]
    assert max(len(line) for line in body.splitlines() if line.startswith("#")) <= 110


VARIANT_KEYS = {
    "rslora": {"peft_use_rslora": True},
    "dora": {"peft_use_dora": True},
    "pissa": {"peft_init_lora_weights": "pissa_niter_4"},
    "loraplus": {"loraplus_lr_ratio": 16},
}


@pytest.mark.parametrize("variant", list(VARIANT_KEYS))
def test_axolotl_sets_each_variant_in_its_own_key(tmp_path, variant):
    fields = exported_fields(tmp_path, "axolotl", VARIANT_PRESETS[variant])
    assert variant_keys(fields, VARIANT_KEYS) == VARIANT_KEYS[variant]
    assert variant_keys(exported_fields(tmp_path / "plain", "axolotl"), VARIANT_KEYS) == {}


# QLoRA in axolotl's keys: its loader then builds NF4 with double quantisation, computing in the training dtype.
QLORA_KEYS = {"adapter": "qlora", "load_in_4bit": True}


@pytest.mark.parametrize(("key", "plain"), [("qlora", "math-24gib"), ("qlora-cpu", "math-cpu")])
def test_axolotl_qlora_is_the_qlora_adapter_on_4_bit_weights(tmp_path, key, plain):
    fields = exported_fields(tmp_path, "axolotl", PRESETS[key])
    assert own_keys(fields, QLORA_KEYS) == QLORA_KEYS
    assert read_export(tmp_path)["quantize"] == "nf4"
    assert "adapter qlora with load_in_4bit loads the base model's linear layers" in comments(tmp_path / "axolotl.yaml")
    fields = exported_fields(tmp_path / "plain", "axolotl", load_preset(plain))
    assert (fields["adapter"], "load_in_4bit" in fields) == ("lora", False)


def test_an_axolotl_qlora_file_without_4_bit_weights_is_refused(tmp_path):
    fields = exported_fields(tmp_path, "axolotl", PRESETS["qlora"])
    del fields["load_in_4bit"]
    (tmp_path / "axolotl.yaml").write_text(yaml.safe_dump(fields), encoding="utf-8")
    with pytest.raises(AdvisorError, match="adapter qlora without load_in_4bit: true, which axolotl refuses"):
        read_export(tmp_path)
