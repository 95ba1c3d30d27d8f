"""The axolotl export: axolotl.yaml in axolotl's own key names."""

from __future__ import annotations

import pytest

from advisor.exports import DATA_PLACEHOLDER
from tests.advisor.exports.shared import VARIANT_PRESETS, check_header, exported_fields, own_keys, variant_keys

# What axolotl calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4, 4 epochs,
# batch 2 x 512, 10 % warm-up); sources in advisor/exports/axolotl.py's docstring.
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
    "datasets": [{"path": DATA_PLACEHOLDER, "type": "alpaca"}],
}


def test_axolotl_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "axolotl", "axolotl train axolotl.yaml", headed="axolotl.yaml")


def test_axolotl_export_uses_axolotls_own_key_names(tmp_path):
    assert own_keys(exported_fields(tmp_path, "axolotl"), OWN_KEYS) == OWN_KEYS


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
