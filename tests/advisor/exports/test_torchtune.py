"""The torchtune export: torchtune.yaml with torchtune's builders and names, and no MLP-only preset."""

from __future__ import annotations

import pytest
import yaml

from advisor.exports import export_preset
from tests.advisor.exports.shared import (
    ATTENTION,
    MLP,
    VARIANT_PRESETS,
    check_header,
    comments,
    exported_fields,
    own_keys,
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
