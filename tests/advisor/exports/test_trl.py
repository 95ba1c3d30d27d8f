"""The TRL export: trl-sft.yaml in TRL's own key names, parsed by TRL itself into real SFTConfig and LoraConfig."""

from __future__ import annotations

import pytest
import yaml

from advisor.exports import DATA_PLACEHOLDER, carried_fields, export_preset, read_export
from advisor.presets import load_preset
from tests.advisor.exports.shared import (
    PRESETS,
    VARIANT_PRESETS,
    check_header,
    comments,
    exported_fields,
    own_keys,
    variant_keys,
)

# What TRL calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4, 4 epochs,
# batch 2 x 512, 10 % warm-up); sources in advisor/exports/trl.py's docstring.
OWN_KEYS = {
    "model_name_or_path": "meta-llama/Llama-2-7b-hf",
    "use_peft": True,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_target_modules": "all-linear",
    "learning_rate": 1e-4,
    "num_train_epochs": 4,
    "per_device_train_batch_size": 2,
    "max_length": 512,
    "packing": True,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "dataset_name": DATA_PLACEHOLDER,
}


def test_trl_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "trl", "trl sft --config trl-sft.yaml", headed="trl-sft.yaml")


def test_trl_export_uses_trls_own_key_names(tmp_path):
    assert own_keys(exported_fields(tmp_path, "trl"), OWN_KEYS) == OWN_KEYS


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # TRL's own default
@pytest.mark.parametrize("key", ["math-24gib", "attention"])
def test_trl_export_builds_real_trl_and_peft_objects(tmp_path, key):
    trl = pytest.importorskip("trl")
    from transformers import HfArgumentParser

    preset = PRESETS[key]
    export_preset(preset, "trl", tmp_path, origin="a test")
    path = tmp_path / "trl-sft.yaml"
    # SFTConfig trains in bf16 by default; the test machine may have no GPU.
    fields = {**yaml.safe_load(path.read_text(encoding="utf-8")), "use_cpu": True}
    parser = HfArgumentParser((trl.ScriptArguments, trl.SFTConfig, trl.ModelConfig))
    script_args, sft_config, model_config = parser.parse_dict(fields, allow_extra_keys=False)
    assert script_args.dataset_name == DATA_PLACEHOLDER
    assert (sft_config.learning_rate, sft_config.num_train_epochs) == (
        preset.recipe.learning_rate,
        preset.recipe.epochs,
    )
    assert (sft_config.per_device_train_batch_size, sft_config.max_length) == (
        preset.recipe.batch_size,
        preset.recipe.seq_len,
    )
    assert sft_config.warmup_steps == preset.recipe.warmup_ratio and sft_config.packing is True
    assert sft_config.get_warmup_steps(1000) == round(1000 * preset.recipe.warmup_ratio)
    lora = trl.get_peft_config(model_config)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (
        preset.recipe.lora.rank,
        preset.recipe.lora.alpha,
        preset.recipe.lora.dropout,
    )
    expected = preset.recipe.lora.target_modules()
    assert lora.target_modules == (expected if isinstance(expected, str) else set(expected))
    # `trl sft --config FILE` itself: TrlParser refuses keys no dataclass takes.
    parsed = trl.TrlParser((trl.ScriptArguments, trl.SFTConfig, trl.ModelConfig, trl.DatasetMixtureConfig))
    _, sft_from_cli, model_from_cli, _ = parsed.parse_args_and_config(["--config", str(path), "--use_cpu"])
    assert (
        sft_from_cli.learning_rate == preset.recipe.learning_rate and model_from_cli.lora_r == preset.recipe.lora.rank
    )


VARIANT_KEYS = {"rslora": {"use_rslora": True}, "dora": {"use_dora": True}, "pissa": {}, "loraplus": {}}


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # TRL's own default
@pytest.mark.parametrize("variant", list(VARIANT_KEYS))
def test_trl_sets_rslora_and_dora_and_says_it_has_no_pissa_or_loraplus(tmp_path, variant):
    fields = exported_fields(tmp_path, "trl", VARIANT_PRESETS[variant])
    assert variant_keys(fields, VARIANT_KEYS) == VARIANT_KEYS[variant]
    header = comments(tmp_path / "trl-sft.yaml")
    assert ("TRL has no setting for" in header) is (not VARIANT_KEYS[variant])
    if VARIANT_KEYS[variant]:  # TRL's own parser passes them on to PEFT's LoraConfig
        trl = pytest.importorskip("trl")
        parser = trl.TrlParser((trl.ScriptArguments, trl.SFTConfig, trl.ModelConfig, trl.DatasetMixtureConfig))
        _, _, model_config, _ = parser.parse_args_and_config(["--config", str(tmp_path / "trl-sft.yaml"), "--use_cpu"])
        assert getattr(trl.get_peft_config(model_config), f"use_{variant}") is True


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", ["math-cpu", "code-cpu"])
def test_trl_cpu_preset_parses_on_this_cpu_as_written_in_float32(tmp_path, name):
    """The CPU presets load in `trl sft`'s own parser with nothing added, in float32 on the CPU, no checkpointing."""
    trl = pytest.importorskip("trl")
    from trl.scripts.sft import make_parser

    export_preset(load_preset(name), "trl", tmp_path, origin="a test")
    args = ["--config", str(tmp_path / "trl-sft.yaml")]
    _, training, model, _ = make_parser().parse_args_and_config(args, fail_with_unknown_args=True)
    assert (training.bf16, training.fp16, training.use_cpu, model.dtype) == (False, False, True, "float32")
    assert training.device.type == "cpu" and training.gradient_checkpointing is False
    assert model.attn_implementation == "sdpa" and trl.get_peft_config(model).r == 16


def test_trl_gpu_preset_sets_bf16_and_llama2s_chat_template(tmp_path):
    fields = exported_fields(tmp_path, "trl", load_preset("math-24gib"))
    assert own_keys(fields, GPU_KEYS) == GPU_KEYS
    smol = exported_fields(tmp_path / "smol", "trl", load_preset("math-cpu"))
    assert "chat_template_path" not in smol  # SmolLM2-Instruct's tokenizer has its own


GPU_KEYS = {
    "dtype": "bfloat16",
    "attn_implementation": "sdpa",
    "bf16": True,
    "use_cpu": False,
    "gradient_checkpointing": False,
    "chat_template_path": "meta-llama/Llama-2-7b-chat-hf",
}


@pytest.mark.parametrize("name", ["math-cpu", "code-24gib"])
def test_trl_export_reads_back_hardware_and_checkpointing(tmp_path, name):
    preset = load_preset(name)
    export_preset(preset, "trl", tmp_path, origin="a test")
    assert read_export(tmp_path) == carried_fields(preset, "trl")
    assert read_export(tmp_path)["hardware"] == preset.hardware


# QLoRA in trl.ModelConfig's keys (get_quantization_config turns them into a BitsAndBytesConfig).
QLORA_KEYS = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "use_bnb_nested_quant": True}


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # TRL's own default
@pytest.mark.parametrize(
    ("key", "plain", "compute"), [("qlora", "math-24gib", "bfloat16"), ("qlora-cpu", "math-cpu", "float32")]
)
def test_trl_qlora_builds_a_4_bit_nf4_double_quantised_config_computing_in_the_presets_dtype(
    tmp_path, key, plain, compute
):
    fields = exported_fields(tmp_path, "trl", PRESETS[key])
    assert own_keys(fields, QLORA_KEYS) == QLORA_KEYS
    assert read_export(tmp_path)["quantize"] == "nf4"
    assert not set(QLORA_KEYS) & set(exported_fields(tmp_path / "plain", "trl", load_preset(plain)))
    trl = pytest.importorskip("trl")
    parser = trl.TrlParser((trl.ScriptArguments, trl.SFTConfig, trl.ModelConfig, trl.DatasetMixtureConfig))
    _, _, model_config, _ = parser.parse_args_and_config(["--config", str(tmp_path / "trl-sft.yaml"), "--use_cpu"])
    config = trl.get_quantization_config(model_config)  # what `trl sft` hands SFTTrainer
    assert (config.load_in_4bit, config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert str(config.bnb_4bit_compute_dtype) == f"torch.{compute}"
