"""Every export format: registered once, read back equal to the preset, and found from its file alone."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import yaml

from advisor.exports import (
    CARRIED,
    CONFIG_FILES,
    EXPORT_FORMATS,
    FILL_IN,
    FORMATS,
    MODEL_PLACEHOLDER,
    REGISTRY,
    TOOL_NAMES,
    USAGE,
    carried_fields,
    detect_format,
    export_preset,
    read_export,
)
from advisor.exports.base import ADAPTER, ExportFormat
from advisor.presets import load_preset, shipped_presets
from tests.advisor.exports.shared import ATTENTION, MLP, PRESETS, QLORA, VARIANT_PRESETS, comments, qlora
from tuner.errors import AdvisorError

# The only (format, preset) pairs an export refuses; the format's own test says why.
REFUSED = {("torchtune", "mlp"), ("litgpt", "qlora-cpu")}


EVERY_PRESET = {**{name: load_preset(name) for name in shipped_presets()}, **PRESETS}
"""The shipped presets and the tests' own (a study's kind of result, MLP only, no model named)."""


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", list(EVERY_PRESET))
def test_export_reads_back_as_the_preset(tmp_path, fmt, key):
    preset = EVERY_PRESET[key]
    if (fmt, key) in REFUSED:
        refusal = EXPORT_FORMATS[fmt].refusal(preset)
        assert refusal is not None
        with pytest.raises(AdvisorError, match=re.escape(refusal)):
            export_preset(preset, fmt, tmp_path, origin="a test")
        return
    written = export_preset(preset, fmt, tmp_path, origin="a test")
    names = [path.name for path in written]
    assert names == [CONFIG_FILES[fmt], *(["README.md"] if fmt == "peft" else []), "preset.yaml"]
    assert read_export(tmp_path) == carried_fields(preset, fmt)
    assert read_export(tmp_path / CONFIG_FILES[fmt]) == carried_fields(preset, fmt)
    assert load_preset(str(tmp_path)) == preset  # the full preset travels with the export


@pytest.mark.parametrize("fmt", [fmt for fmt in FORMATS if "gradient_checkpointing" in EXPORT_FORMATS[fmt].carried])
@pytest.mark.parametrize("hardware", ["cpu", "gpu"])
def test_gradient_checkpointing_and_the_hardware_read_back_as_the_preset_sets_them(tmp_path, fmt, hardware):
    preset = replace(load_preset("math-cpu"), gradient_checkpointing=True, hardware=hardware)
    export_preset(preset, fmt, tmp_path, origin="a test")
    assert read_export(tmp_path) == carried_fields(preset, fmt)
    assert (read_export(tmp_path)["gradient_checkpointing"], read_export(tmp_path)["hardware"]) == (True, hardware)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", list(VARIANT_PRESETS))
def test_a_variant_is_the_tools_own_setting_or_the_header_says_the_tool_has_none(tmp_path, fmt, variant):
    preset, chosen = VARIANT_PRESETS[variant], EXPORT_FORMATS[fmt]
    export_preset(preset, fmt, tmp_path, origin="a test")
    assert read_export(tmp_path) == carried_fields(preset, fmt)
    assert load_preset(str(tmp_path)) == preset  # preset.yaml keeps the variant whatever the tool
    headed = comments(tmp_path / ("README.md" if fmt == "peft" else CONFIG_FILES[fmt]))
    if variant in chosen.variants:
        assert read_export(tmp_path)["variant"] == variant
        assert f"set in {chosen.tool}'s own key below" in headed
    else:
        assert read_export(tmp_path).get("variant", "lora") == "lora"
        assert f"{chosen.tool} has no setting for" in headed and "so this file trains plain LoRA" in headed


QUANTISATION = re.compile(r"qlora|quanti[sz]|4bit|4-bit|nf4|bnb", re.IGNORECASE)
"""Any word of quantisation, which no 16-bit preset's export holds."""


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_qlora_preset_says_so_and_reads_back_and_a_16_bit_one_names_no_quantisation(tmp_path, fmt):
    export_preset(QLORA, fmt, tmp_path / "qlora", origin="a test")
    headed = comments(tmp_path / "qlora" / ("README.md" if fmt == "peft" else CONFIG_FILES[fmt]))
    assert "QLoRA: the base model's linear layers in 4-bit NF4 with double quantisation" in headed
    # set in the tool's own keys, but for PEFT, whose adapter config has no setting for it
    assert (f"set in {TOOL_NAMES[fmt]}'s own keys below" in headed) is ("quantize" in CARRIED[fmt])
    assert read_export(tmp_path / "qlora") == carried_fields(QLORA, fmt)
    assert load_preset(str(tmp_path / "qlora")) == QLORA  # preset.yaml keeps quantize: nf4
    written = export_preset(PRESETS["math-24gib"], fmt, tmp_path / "lora", origin="a test")
    assert not [path.name for path in written if QUANTISATION.search(path.read_text(encoding="utf-8"))]
    assert read_export(tmp_path / "lora").get("quantize") is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_qlora_preset_keeps_its_variant_where_the_tool_has_one(tmp_path, fmt):
    preset = qlora(VARIANT_PRESETS["dora"])
    export_preset(preset, fmt, tmp_path, origin="a test")
    assert read_export(tmp_path) == carried_fields(preset, fmt)
    assert read_export(tmp_path).get("variant", "lora") == (
        "dora" if "dora" in EXPORT_FORMATS[fmt].variants else "lora"
    )


def test_formats_are_offered_in_the_registrys_order_with_their_own_names_and_files():
    # The first six in the order the command line has always offered them; a new format goes after them.
    assert FORMATS[:6] == ("peft", "axolotl", "llama-factory", "trl", "torchtune", "litgpt")
    assert [each.name for each in REGISTRY] == list(FORMATS) == list(EXPORT_FORMATS)
    assert len({each.file_name for each in REGISTRY}) == len(REGISTRY)
    assert "preset.yaml" not in CONFIG_FILES.values() and "README.md" not in CONFIG_FILES.values()
    for each in REGISTRY:
        assert each.tool and each.usage.strip() and each.fill_in.strip()
        assert "{file}" in each.usage or "{dir}" in each.usage
        assert (CONFIG_FILES[each.name], TOOL_NAMES[each.name], USAGE[each.name]) == (
            each.file_name,
            each.tool,
            each.usage,
        )
        assert (FILL_IN[each.name], CARRIED[each.name]) == (each.fill_in, each.carried)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_reader_returns_exactly_the_fields_its_format_carries(tmp_path, fmt):
    preset = load_preset("math-24gib")
    export_preset(preset, fmt, tmp_path, origin="a test")
    text = (tmp_path / CONFIG_FILES[fmt]).read_text(encoding="utf-8")
    fields = yaml.safe_load(text)  # JSON is YAML too
    assert EXPORT_FORMATS[fmt].read(fields) == carried_fields(preset, fmt)
    assert detect_format(tmp_path / CONFIG_FILES[fmt]) == (fmt, tmp_path / CONFIG_FILES[fmt])


def test_a_file_with_two_tools_keys_goes_to_the_more_specific_rule(tmp_path):
    cases = {
        "peft": {"peft_type": "LORA", "model": {"_component_": "x"}, "finetuning_type": "lora"},
        "torchtune": {"model": {"_component_": "x"}, "adapter": "lora", "lora_r": 8, "finetuning_type": "lora"},
        "llama-factory": {"finetuning_type": "lora", "adapter": "lora", "lora_r": 8, "use_peft": True},
        "axolotl": {"adapter": "lora", "lora_r": 8, "use_peft": True, "checkpoint_dir": "x"},
        "trl": {"use_peft": True, "checkpoint_dir": "x", "lora_query": True},
        "litgpt": {"checkpoint_dir": "x"},
    }
    for fmt, fields in cases.items():
        path = tmp_path / f"{fmt}-like.yaml"
        path.write_text(yaml.safe_dump(fields), encoding="utf-8")
        assert detect_format(path) == (fmt, path)


def test_builtin_models_export_as_their_hub_id_and_no_model_as_a_placeholder(tmp_path):
    export_preset(ATTENTION, "axolotl", tmp_path / "builtin", origin="a test")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in (tmp_path / "builtin/axolotl.yaml").read_text()
    export_preset(MLP, "llama-factory", tmp_path / "none", origin="a test")
    text = (tmp_path / "none/llama-factory.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["model_name_or_path"] == MODEL_PLACEHOLDER
    assert "the preset names no model: fill in yours" in text


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


def test_a_file_setting_two_variants_or_another_loraplus_ratio_is_refused(tmp_path):
    base = "finetuning_type: lora\nlora_rank: 8\nlora_target: all\nlearning_rate: 1.0e-4\nnum_train_epochs: 1\n"
    base += "per_device_train_batch_size: 2\ncutoff_len: 64\n"
    (tmp_path / "llama-factory.yaml").write_text(base + "use_dora: true\nuse_rslora: true\n", encoding="utf-8")
    with pytest.raises(AdvisorError, match="rslora and dora together: LoRA Advisor's presets use one variant"):
        read_export(tmp_path)
    (tmp_path / "llama-factory.yaml").write_text(base + "loraplus_lr_ratio: 8\n", encoding="utf-8")
    with pytest.raises(AdvisorError, match="loraplus_lr_ratio 8: LoRA Advisor's LoRA\\+ uses 16"):
        read_export(tmp_path)


def test_every_format_carries_the_adapter():
    assert all(set(CARRIED[fmt]) >= {"rank", "alpha", "targets", "dropout"} for fmt in FORMATS)
    assert all(set(each.carried) >= set(ADAPTER) for each in REGISTRY)


def test_an_unknown_format_is_refused_with_the_known_ones(tmp_path):
    message = "unknown format 'unsloth' (known: peft, axolotl, llama-factory, trl, torchtune, litgpt)"
    with pytest.raises(AdvisorError, match=re.escape(message)):
        export_preset(ATTENTION, "unsloth", tmp_path / "out", origin="a test")
    with pytest.raises(AdvisorError, match=re.escape(message)):
        carried_fields(ATTENTION, "unsloth")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"carried": ("rank", "alpha", "targets")}, "must carry the adapter; it lacks dropout"),
        ({"carried": (*ADAPTER, "seed")}, "carries seed, not preset fields an export carries"),
        ({"usage": ""}, "needs a name, a file name, a usage line and what to fill in"),
        ({"variants": ("lora",)}, "carries 'variant' exactly when it sets a variant besides LoRA"),
    ],
)
def test_a_format_declares_the_adapter_it_carries_and_how_to_run_it(changes, message):
    axolotl = EXPORT_FORMATS["axolotl"]
    fields = {name: getattr(axolotl, name) for name in ("name", "tool", "file_name", "usage", "fill_in", "carried")}
    with pytest.raises(ValueError, match=re.escape(message)):
        ExportFormat(**{**fields, **changes}, write=axolotl.write, read=axolotl.read)
