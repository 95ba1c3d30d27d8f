"""Presets and checks the export format tests share."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from advisor.exports import CONFIG_FILES, export_preset
from advisor.presets import Preset, load_preset
from tuner.defaults import VARIANTS
from tuner.paper import PAPER
from tuner.settings import LoraSettings, TrainingRecipe

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
# ATTENTION with each LoRA variant (attention only, so that torchtune takes them too).
VARIANT_PRESETS = {
    variant: replace(
        ATTENTION,
        name=f"custom-{variant}",
        recipe=replace(ATTENTION.recipe, lora=replace(ATTENTION.recipe.lora, variant=variant)),
    )
    for variant in VARIANTS
    if variant != "lora"
}
# A study's preset that knows its data: conversations (instruction tuning) and plain text (continued pretraining),
# on the built-in model (SmolLM2, whose chat template the exports know) and on Llama-2 (whose base has none).
MESSAGES = replace(load_preset("math-cpu"), name="custom-messages", task="custom", data_format="messages")
TEXT = replace(MESSAGES, name="custom-text", data_format="text", regime="cpt")
LLAMA2_MESSAGES = replace(load_preset("math-24gib"), name="llama2-messages", data_format="messages")


def qlora(preset: Preset) -> Preset:
    """PRESET as a QLoRA preset: its adapter trained on the base model's weights in 4-bit NF4."""
    return replace(preset, name=f"{preset.name}-qlora", recipe=replace(preset.recipe, quantize="nf4"))


# QLoRA: the paper's Llama-2-7B on a GPU, and the built-in model on a CPU (which LitGPT refuses).
QLORA = qlora(load_preset("math-24gib"))
QLORA_CPU = qlora(load_preset("math-cpu"))
PRESETS = {
    "math-24gib": load_preset("math-24gib"),
    "code-80gib": load_preset("code-80gib"),
    "attention": ATTENTION,
    "mlp": MLP,
    "qlora": QLORA,
    "qlora-cpu": QLORA_CPU,
}


def comments(path: Path) -> str:
    """A file's text with the header's line breaks and comment marks taken out."""
    return " ".join(line.strip("# ").strip() for line in path.read_text(encoding="utf-8").splitlines())


def check_header(tmp_path: Path, fmt: str, usage: str, headed: str) -> None:
    """Export math-24gib as FMT: HEADED (the file holding the tool's header) and preset.yaml say who wrote them,
    from what, where the numbers come from and how to use them (USAGE)."""
    export_preset(PRESETS["math-24gib"], fmt, tmp_path, origin="the shipped preset math-24gib")
    for path in (tmp_path / "preset.yaml", tmp_path / headed):
        text = comments(path)
        assert "Exported by LoRA Advisor" in text and "from the shipped preset math-24gib" in text
        assert PAPER in text and "learning rate 1e-4 at r = 16 (authors' table)" in text
        assert f"Use: {usage}" in text and "Fill in before training:" in text
    if headed == CONFIG_FILES[fmt]:
        assert (tmp_path / headed).read_text(encoding="utf-8").startswith("# Exported by LoRA Advisor")


def exported_fields(tmp_path: Path, fmt: str, preset: Preset | None = None) -> dict[str, Any]:
    """The settings in FMT's file exported from PRESET (math-24gib by default), as the tool's YAML parser reads them."""
    export_preset(preset or PRESETS["math-24gib"], fmt, tmp_path, origin="a test")
    return yaml.safe_load((tmp_path / CONFIG_FILES[fmt]).read_text(encoding="utf-8"))


def own_keys(fields: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The values FIELDS holds under EXPECTED's keys (None where it has none)."""
    return {key: fields.get(key) for key in expected}


def variant_keys(fields: dict[str, Any], keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The values FIELDS holds under any of the variants' KEYS (variant -> its keys), those it holds only."""
    every = {key for each in keys.values() for key in each}
    return {key: fields[key] for key in every if key in fields}
