"""The LLaMA-Factory export: llama-factory.yaml in LLaMA-Factory's own key names."""

from __future__ import annotations

import pytest

from advisor.exports import DATA_PLACEHOLDER
from tests.advisor.exports.shared import VARIANT_PRESETS, check_header, exported_fields, own_keys, variant_keys

# What LLaMA-Factory calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4, 4 epochs,
# batch 2 x 512, 10 % warm-up); sources in advisor/exports/llama_factory.py's docstring.
OWN_KEYS = {
    "model_name_or_path": "meta-llama/Llama-2-7b-hf",
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
    "output_dir": "saves/math-24gib",
}


def test_llama_factory_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "llama-factory", "llamafactory-cli train llama-factory.yaml", headed="llama-factory.yaml")


def test_llama_factory_export_uses_llama_factorys_own_key_names(tmp_path):
    assert own_keys(exported_fields(tmp_path, "llama-factory"), OWN_KEYS) == OWN_KEYS


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
