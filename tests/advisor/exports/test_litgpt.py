"""The LitGPT export: litgpt-lora.yaml in LitGPT's own key names, its warm-up a share of one epoch."""

from __future__ import annotations

from tests.advisor.exports.shared import VARIANT_PRESETS, check_header, comments, exported_fields, own_keys

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


def test_litgpt_warmup_is_a_share_of_one_epoch(tmp_path):
    train = exported_fields(tmp_path, "litgpt")["train"]
    # 10 % of all steps over 4 epochs is 40 % of one epoch; lr_warmup_steps must be null beside it.
    assert train["lr_warmup_fraction"] == 0.4 and train["lr_warmup_steps"] is None
    assert (train["global_batch_size"], train["micro_batch_size"], train["max_seq_length"]) == (2, 2, 512)


def test_litgpt_has_no_variant_and_says_so(tmp_path):
    fields = exported_fields(tmp_path, "litgpt", VARIANT_PRESETS["dora"])
    assert not any("dora" in key for key in fields)
    header = comments(tmp_path / "litgpt-lora.yaml")
    assert "LitGPT has no setting for DoRA (weight-decomposed LoRA), so this file trains plain LoRA" in header
