"""Export a preset as another tool's own config, and read such a config back (pure: no torch; PEFT's writer
imports peft inside).

Each export directory holds the tool's file, with that tool's key names and a comment header saying where the
numbers come from and how to run it, and our own preset.yaml, so the full preset travels with it. One module per
format declares all of it (base.ExportFormat); each names in its docstring the tool's source its key names were
checked against. A new format is one module and one line in REGISTRY below (the registry is listed, not
discovered, so its order, the --format choices' order, stays in one place).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from advisor.exports.axolotl import AXOLOTL
from advisor.exports.base import DATA_PLACEHOLDER, MODEL_PLACEHOLDER, ExportFormat
from advisor.exports.litgpt import LITGPT
from advisor.exports.llama_factory import LLAMA_FACTORY
from advisor.exports.peft import PEFT
from advisor.exports.torchtune import TORCHTUNE
from advisor.exports.trl import TRL
from advisor.presets import Preset, write_preset
from tuner.errors import AdvisorError

REGISTRY: tuple[ExportFormat, ...] = (PEFT, AXOLOTL, LLAMA_FACTORY, TRL, TORCHTUNE, LITGPT)
"""Every export format, in the order the command line and the app offer them."""
EXPORT_FORMATS = {each.name: each for each in REGISTRY}
"""Each format by its --format name."""

FORMATS = tuple(EXPORT_FORMATS)
CONFIG_FILES = {each.name: each.file_name for each in REGISTRY}
"""The file each format's export writes beside preset.yaml."""
TOOL_NAMES = {each.name: each.tool for each in REGISTRY}
USAGE = {each.name: each.usage for each in REGISTRY}
"""How to train with the exported file ({file}: its path, {dir}: its directory)."""
FILL_IN = {each.name: each.fill_in for each in REGISTRY}
CARRIED = {each.name: each.carried for each in REGISTRY}
"""The preset fields each format's file carries (and `read_export` returns)."""

__all__ = [
    "CARRIED",
    "CONFIG_FILES",
    "DATA_PLACEHOLDER",
    "EXPORT_FORMATS",
    "FILL_IN",
    "FORMATS",
    "MODEL_PLACEHOLDER",
    "REGISTRY",
    "TOOL_NAMES",
    "USAGE",
    "ExportFormat",
    "carried_fields",
    "detect_format",
    "export_format",
    "export_header",
    "export_preset",
    "for_hardware",
    "read_export",
]


def export_format(fmt: str) -> ExportFormat:
    """The format named FMT; AdvisorError naming the known ones otherwise."""
    if fmt not in EXPORT_FORMATS:
        raise AdvisorError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return EXPORT_FORMATS[fmt]


def carried_fields(preset: Preset, fmt: str) -> dict[str, Any]:
    """The preset's values for the fields a format carries (what reading its export back should give: a variant
    the tool has no setting for reads back as plain LoRA; `quantize` is 'nf4' for QLoRA, None for 16 bits)."""
    chosen = export_format(fmt)
    variant = preset.recipe.lora.variant
    values = {
        "rank": preset.recipe.lora.rank,
        "alpha": preset.recipe.lora.alpha,
        "targets": preset.recipe.lora.targets,
        "dropout": preset.recipe.lora.dropout,
        "learning_rate": preset.recipe.learning_rate,
        "epochs": preset.recipe.epochs,
        "batch_size": preset.recipe.batch_size,
        "seq_len": preset.recipe.seq_len,
        "warmup_ratio": preset.recipe.warmup_ratio,
        "variant": variant if variant in chosen.variants else "lora",
        "hardware": preset.hardware,
        "gradient_checkpointing": preset.gradient_checkpointing,
        "quantize": preset.recipe.quantize,
    }
    return {name: values[name] for name in chosen.carried}


def for_hardware(preset: Preset, origin: str, hardware: str | None) -> tuple[Preset, str]:
    """The preset moved to HARDWARE ('gpu' or 'cpu'; None: as it is), and its origin saying so where it moved."""
    if hardware is None or hardware == preset.hardware:
        return preset, origin
    machine = "a CPU" if hardware == "cpu" else "a GPU"
    return replace(preset, hardware=hardware), f"{origin}, exported for {machine}"


def export_preset(preset: Preset, fmt: str, out_dir: Path, origin: str) -> list[Path]:
    """Write the preset as FMT's own config in OUT_DIR, with preset.yaml beside it; returns the files written."""
    chosen = export_format(fmt)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AdvisorError(f"--out {out_dir} is a file, not a directory")
    refusal = chosen.refusal(preset)
    if refusal is not None:
        raise AdvisorError(refusal)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / chosen.file_name
    written = chosen.write(preset, config_path, chosen.header(preset, origin, config_path.name))
    preset_header = (
        chosen.header(preset, origin, config_path.name, beside=False)
        + f"\n\nThis file is LoRA Advisor's own preset, the full form of {config_path.name};\n"
        "`advisor export --preset preset.yaml --format FORMAT --out DIR` exports it for another tool."
    )
    written.append(write_preset(preset, out_dir / "preset.yaml", preset_header))
    return written


def export_header(preset: Preset, fmt: str, origin: str, file_name: str, beside: bool = True) -> str:
    """The comment header of an exported file: by whom, from what, where the numbers come from, how to use it.

    With `beside`, it ends by pointing at preset.yaml (every file but preset.yaml itself)."""
    return EXPORT_FORMATS[fmt].header(preset, origin, file_name, beside)


def detect_format(path: Path | str) -> tuple[str, Path]:
    """Which format an exported file (or a directory holding one) is in, and the file; AdvisorError otherwise."""
    path = Path(path)
    if path.is_dir():
        for each in REGISTRY:
            if (path / each.file_name).is_file():
                return each.name, path / each.file_name
        raise AdvisorError(f"{path} holds none of {', '.join(CONFIG_FILES.values())}")
    fields = _load(path)
    return _format_of(fields, path), path


def read_export(path: Path | str) -> dict[str, Any]:
    """The preset fields an exported file carries (see CARRIED), read back with the format's own key names."""
    fmt, file = detect_format(path)
    chosen = EXPORT_FORMATS[fmt]
    fields = _load(file)
    try:
        values = chosen.read(fields)
    except KeyError as missing:
        raise AdvisorError(f"{file} ({chosen.tool}) has no {missing.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise AdvisorError(f"{file} ({chosen.tool}): {error}") from None
    return {name: values[name] for name in chosen.carried}


def _load(path: Path) -> dict[str, Any]:
    """A config file's settings, from JSON (.json) or YAML; AdvisorError for an unreadable one or not a mapping."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AdvisorError(f"cannot read {path}: {error}") from None
    try:
        fields = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise AdvisorError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    if not isinstance(fields, dict):
        raise AdvisorError(f"{path} does not hold a mapping of settings")
    return fields


def _format_of(fields: dict[str, Any], path: Path) -> str:
    """The format whose detection rule the fields meet first (by detect_order); AdvisorError for none."""
    for each in sorted(REGISTRY, key=lambda candidate: candidate.detect_order):
        if each.detect is not None and each.detect(fields):
            return each.name
    raise AdvisorError(f"cannot tell which tool {path} is for: none of {', '.join(TOOL_NAMES.values())}'s keys")
