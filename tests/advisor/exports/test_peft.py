"""The PEFT export: adapter_config.json that PEFT itself loads, with the header in README.md beside it."""

from __future__ import annotations

import pytest

from advisor.exports import export_preset
from tests.advisor.exports.shared import ATTENTION, PRESETS, VARIANT_PRESETS, check_header
from tuner.defaults import ATTENTION_MODULES


def test_peft_readme_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path):
    check_header(tmp_path, "peft", "LoraConfig.from_pretrained(this directory)", headed="README.md")


def test_peft_export_loads_with_peft(tmp_path):
    peft = pytest.importorskip("peft")
    export_preset(ATTENTION, "peft", tmp_path, origin="a test")
    config = peft.LoraConfig.from_pretrained(str(tmp_path))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 4, 0.05)
    assert set(config.target_modules) == set(ATTENTION_MODULES)
    assert config.base_model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    export_preset(PRESETS["code-80gib"], "peft", tmp_path / "all", origin="a test")
    config = peft.LoraConfig.from_pretrained(str(tmp_path / "all"))
    assert (config.r, config.lora_alpha, config.target_modules) == (256, 512, "all-linear")


def test_peft_export_sets_each_variant_in_peft_own_keys(tmp_path):
    peft = pytest.importorskip("peft")
    expected = {
        "rslora": (True, False, True),
        "dora": (False, True, True),
        "pissa": (False, False, "pissa_niter_4"),
        "loraplus": (False, False, True),  # an optimizer, not an adapter setting: README.md shows it
    }
    for variant, flags in expected.items():
        export_preset(VARIANT_PRESETS[variant], "peft", tmp_path / variant, origin="a test")
        config = peft.LoraConfig.from_pretrained(str(tmp_path / variant))
        assert (config.use_rslora, config.use_dora, config.init_lora_weights) == flags
    readme = (tmp_path / "loraplus" / "README.md").read_text(encoding="utf-8")
    assert "PEFT has no setting for LoRA+" in readme and "loraplus_lr_ratio=16" in readme
    readme = (tmp_path / "pissa" / "README.md").read_text(encoding="utf-8")
    assert "path_initial_model_for_weight_conversion" in readme
