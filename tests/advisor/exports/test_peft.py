"""The PEFT export: adapter_config.json that PEFT itself loads, with the header in README.md beside it."""

from __future__ import annotations

import ast
import re

import pytest

from advisor.exports import export_preset
from advisor.presets import load_preset
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


@pytest.mark.parametrize(("key", "dtype"), [("qlora", "torch.bfloat16"), ("qlora-cpu", "torch.float32")])
def test_peft_readme_sets_up_qlora_and_the_adapter_config_is_lora_s(tmp_path, key, dtype):
    export_preset(PRESETS[key], "peft", tmp_path / "qlora", origin="a test")
    readme = (tmp_path / "qlora" / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# QLoRA adapter config") and "| quantisation | QLoRA: the base model's linear" in readme
    (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    calls = {
        node.func.id: node
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    arguments = {keyword.arg: ast.unparse(keyword.value) for keyword in calls["BitsAndBytesConfig"].keywords}
    assert arguments == {
        "load_in_4bit": "True",
        "bnb_4bit_quant_type": "'nf4'",
        "bnb_4bit_use_double_quant": "True",
        "bnb_4bit_compute_dtype": dtype,
    }
    assert "prepare_model_for_kbit_training" in calls and "get_peft_model" in calls
    export_preset(load_preset(PRESETS[key].name.removesuffix("-qlora")), "peft", tmp_path / "lora", origin="a test")
    readme = (tmp_path / "lora" / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# LoRA adapter config") and "BitsAndBytesConfig" not in readme
    peft = pytest.importorskip("peft")
    adapters = [peft.LoraConfig.from_pretrained(str(tmp_path / kind)).to_dict() for kind in ("qlora", "lora")]
    assert adapters[0] == adapters[1]  # no adapter setting holds the quantisation
