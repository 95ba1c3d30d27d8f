"""`advisor export`: each tool's own config, read back equal to the preset, and real PEFT / TRL objects from it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from advisor.export import (
    CARRIED,
    CONFIG_FILES,
    DATA_PLACEHOLDER,
    FORMATS,
    MODEL_PLACEHOLDER,
    carried_fields,
    detect_format,
    export_preset,
    read_export,
)
from advisor.presets import Preset, load_preset
from tests.conftest import run_cli
from tuner.errors import AdvisorError
from tuner.paper import PAPER
from tuner.settings import ATTENTION_MODULES, LoraSettings, TrainingRecipe

# A study's kind of result: attention only, a non-default dropout and warm-up, the built-in model.
ATTENTION = Preset(
    name="custom-attention",
    task="custom",
    recipe=TrainingRecipe(
        lora=LoraSettings(rank=8, alpha=4.0, targets="attention", dropout=0.05),
        learning_rate=3e-4,
        epochs=5,
        batch_size=3,
        seq_len=384,
        warmup_ratio=0.05,
    ),
    model="smollm2-135m-instruct",
    source="study",
    notes="Recommended by trial 2 of a study.",
)
MLP = replace(
    ATTENTION,
    name="custom-mlp",
    recipe=replace(ATTENTION.recipe, lora=LoraSettings(rank=32, alpha=64.0, targets="mlp")),
    model=None,
)
PRESETS = {
    "math-24gib": load_preset("math-24gib"),
    "code-80gib": load_preset("code-80gib"),
    "attention": ATTENTION,
    "mlp": MLP,
}
USAGE_LINES = {
    "peft": "LoraConfig.from_pretrained(this directory)",
    "axolotl": "axolotl train axolotl.yaml",
    "llama-factory": "llamafactory-cli train llama-factory.yaml",
    "trl": "trl sft --config trl-sft.yaml",
    "torchtune": "tune run lora_finetune_single_device --config torchtune.yaml",
    "litgpt": "litgpt finetune_lora --config litgpt-lora.yaml",
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", list(PRESETS))
def test_export_reads_back_as_the_preset(tmp_path, fmt, key):
    preset = PRESETS[key]
    if fmt == "torchtune" and preset.recipe.lora.targets == "mlp":
        with pytest.raises(AdvisorError, match="MLP-only preset cannot be exported to torchtune"):
            export_preset(preset, fmt, tmp_path, origin="a test")
        return
    written = export_preset(preset, fmt, tmp_path, origin="a test")
    names = [path.name for path in written]
    assert names == [CONFIG_FILES[fmt], *(["README.md"] if fmt == "peft" else []), "preset.yaml"]
    assert read_export(tmp_path) == carried_fields(preset, fmt)
    assert read_export(tmp_path / CONFIG_FILES[fmt]) == carried_fields(preset, fmt)
    assert load_preset(str(tmp_path)) == preset  # the full preset travels with the export


def comments(path: Path) -> str:
    """A file's text with the header's line breaks and comment marks taken out."""
    return " ".join(line.strip("# ").strip() for line in path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_file_says_who_wrote_it_from_what_and_how_to_use_it(tmp_path, fmt):
    export_preset(PRESETS["math-24gib"], fmt, tmp_path, origin="the shipped preset math-24gib")
    headed = [tmp_path / "preset.yaml"]
    headed.append(tmp_path / ("README.md" if fmt == "peft" else CONFIG_FILES[fmt]))
    for path in headed:
        text = comments(path)
        assert "Exported by LoRA Advisor" in text and "from the shipped preset math-24gib" in text
        assert PAPER in text and "learning rate 1e-4 at r = 16 (authors' table)" in text
        assert f"Use: {USAGE_LINES[fmt]}" in text and "Fill in before training:" in text
    if fmt != "peft":
        assert (tmp_path / CONFIG_FILES[fmt]).read_text(encoding="utf-8").startswith("# Exported by LoRA Advisor")


# What each tool calls the settings of math-24gib (r=16, alpha=32, all linear layers, lr 1e-4, 4 epochs,
# batch 2 x 512, 10 % warm-up), in its own key names; sources in advisor/export.py's docstring.
OWN_KEYS = {
    "axolotl": {
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
    },
    "llama-factory": {
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
    },
    "trl": {
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
    },
    "torchtune": {
        "epochs": 4,
        "batch_size": 2,
        "optimizer": {"_component_": "torch.optim.AdamW", "lr": 1e-4, "weight_decay": 0.0},
    },
    "litgpt": {
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
    },
}


@pytest.mark.parametrize("fmt", list(OWN_KEYS))
def test_exports_use_each_tools_own_key_names(tmp_path, fmt):
    export_preset(PRESETS["math-24gib"], fmt, tmp_path, origin="a test")
    fields = yaml.safe_load((tmp_path / CONFIG_FILES[fmt]).read_text(encoding="utf-8"))
    assert {key: fields.get(key) for key in OWN_KEYS[fmt]} == OWN_KEYS[fmt]


def test_torchtune_names_o_proj_output_proj_and_uses_the_llama2_builder(tmp_path):
    export_preset(PRESETS["math-24gib"], "torchtune", tmp_path, origin="a test")
    fields = yaml.safe_load((tmp_path / "torchtune.yaml").read_text(encoding="utf-8"))
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


def test_litgpt_warmup_is_a_share_of_one_epoch(tmp_path):
    export_preset(PRESETS["math-24gib"], "litgpt", tmp_path, origin="a test")
    train = yaml.safe_load((tmp_path / "litgpt-lora.yaml").read_text(encoding="utf-8"))["train"]
    # 10 % of all steps over 4 epochs is 40 % of one epoch; lr_warmup_steps must be null beside it.
    assert train["lr_warmup_fraction"] == 0.4 and train["lr_warmup_steps"] is None
    assert (train["global_batch_size"], train["micro_batch_size"], train["max_seq_length"]) == (2, 2, 512)


def test_builtin_models_export_as_their_hub_id_and_no_model_as_a_placeholder(tmp_path):
    export_preset(ATTENTION, "axolotl", tmp_path / "builtin", origin="a test")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in (tmp_path / "builtin/axolotl.yaml").read_text()
    export_preset(MLP, "llama-factory", tmp_path / "none", origin="a test")
    text = (tmp_path / "none/llama-factory.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["model_name_or_path"] == MODEL_PLACEHOLDER
    assert "the preset names no model: fill in yours" in text


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


def test_read_export_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "other.yaml").write_text("epochs: 3\n", encoding="utf-8")
    with pytest.raises(AdvisorError, match="cannot tell which tool"):
        detect_format(tmp_path / "other.yaml")
    with pytest.raises(AdvisorError, match="holds none of"):
        read_export(tmp_path)
    (tmp_path / "axolotl.yaml").write_text("adapter: lora\nlora_r: 8\nlora_target_linear: true\n", encoding="utf-8")
    with pytest.raises(AdvisorError, match=r"axolotl\.yaml \(axolotl\) has no 'lora_alpha'"):
        read_export(tmp_path)
    (tmp_path / "axolotl.yaml").write_text("adapter: lora\nlora_r: 8\nlora_target_modules: [q_proj]\n")
    with pytest.raises(AdvisorError, match=r"target modules \['q_proj'\]: not attention, mlp or all"):
        read_export(tmp_path)


def test_every_format_carries_the_adapter():
    assert all(set(CARRIED[fmt]) >= {"rank", "alpha", "targets", "dropout"} for fmt in FORMATS)


# --- the command line ---------------------------------------------------------------------------------------


def test_cli_exports_a_shipped_preset(capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "--preset", "math-24gib", "--format", "axolotl", "--out", str(tmp_path))
    assert code == 0 and err == ""
    assert f"wrote {tmp_path / 'axolotl.yaml'}" in out and f"axolotl train {tmp_path / 'axolotl.yaml'}" in out
    assert read_export(tmp_path) == carried_fields(load_preset("math-24gib"), "axolotl")
    assert "from the shipped preset math-24gib (presets/math-24gib.yaml)" in (tmp_path / "axolotl.yaml").read_text()


def test_cli_json_lists_the_files(capsys, tmp_path):
    code, out, _ = run_cli(
        capsys, "export", "--preset", "code-cpu", "--format", "litgpt", "--out", str(tmp_path), "--json"
    )
    assert code == 0 and json.loads(out) == [str(tmp_path / "litgpt-lora.yaml"), str(tmp_path / "preset.yaml")]


def fabricate_run(run_dir: Path) -> Path:
    """A finished study's run directory, as tuner.study writes it, without running one."""
    run_dir.mkdir(parents=True)
    recommendation = {
        "task": "math",
        "model": "smollm2-135m-instruct",
        "trial": 7,
        "learning_rate": 2.5e-4,
        "rank": 64,
        "alpha": 128.0,
        "targets": "all",
        "target_modules": "all-linear",
        "epochs": 4,
        "objective": {"goal": 0.5, "value": 1.234},
        "run_dir": str(run_dir),
    }
    settings = {
        "task": "math",
        "model": "smollm2-135m-instruct",
        "trials": 12,
        "budget": {"train_tokens": 65536, "batch_size": 4, "seq_len": 256, "warmup_ratio": 0.1},
        "memory_budget": None,
    }
    (run_dir / "recommendation.json").write_text(json.dumps(recommendation), encoding="utf-8")
    (run_dir / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    return run_dir


def test_cli_exports_a_finished_study(capsys, tmp_path):
    run_dir = fabricate_run(tmp_path / "run")
    code, _, err = run_cli(capsys, "export", "--from", str(run_dir), "--format", "trl", "--out", str(tmp_path / "out"))
    assert code == 0 and err == ""
    assert read_export(tmp_path / "out") == {
        "rank": 64,
        "alpha": 128.0,
        "targets": "all",
        "dropout": 0.0,
        "learning_rate": 2.5e-4,
        "epochs": 4,
        "batch_size": 4,
        "seq_len": 256,
        "warmup_ratio": 0.1,
    }
    preset = load_preset(str(tmp_path / "out"))
    assert preset.source == "study" and preset.extra["trial"] == 7 and preset.model == "smollm2-135m-instruct"
    assert f"from trial 7 of the study in {run_dir}" in comments(tmp_path / "out" / "trl-sft.yaml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "math-24gib", "--format", "unsloth"], "argument --format: invalid choice: 'unsloth'"),
        (["--from", "no-such-run", "--format", "peft"], "advisor: error: no run directory no-such-run"),
        (["--format", "peft"], "one of the arguments --from --preset is required"),
        (["--preset", "math-24gib", "--from", "x", "--format", "peft"], "not allowed with argument"),
        (["--preset", "no-such-preset", "--format", "peft"], "advisor: error: no preset 'no-such-preset'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "export", *args, "--out", str(tmp_path / "out"))
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_run_without_a_recommendation_and_a_malformed_preset(capsys, tmp_path):
    (tmp_path / "unfinished").mkdir()
    code, _, err = run_cli(capsys, "export", "--from", str(tmp_path / "unfinished"), "--format", "peft", "--out", "x")
    unfinished = tmp_path / "unfinished"
    assert code == 2 and err == f"advisor: error: {unfinished} has no recommendation.json: has its study finished?\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: mine\ntask: math\nlora: {rank: 0, alpha: 32, targets: all}\nlearning_rate: 1.0e-4\n")
    code, _, err = run_cli(capsys, "export", "--preset", str(bad), "--format", "axolotl", "--out", str(tmp_path / "o"))
    assert code == 2 and err == f"advisor: error: preset {bad}: rank must be at least 1, got 0\n"
    assert not (tmp_path / "o").exists()
