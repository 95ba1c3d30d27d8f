"""`advisor export`: a shipped preset, a preset file or a finished study's recommendation, as another tool's config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from advisor.exports import CONFIG_FILES, FORMATS, USAGE, export_preset
from advisor.presets import (
    PRESETS_DIR,
    Preset,
    load_preset,
    preset_from_recommendation,
    preset_path,
    study_origin,
)
from tuner.errors import AdvisorError


def export(
    *, from_run: Path | None = None, preset: str | None = None, fmt: str, out: Path, json_output: bool = False
) -> int:
    """Write LoRA settings as another tool's own config: PEFT, axolotl, LLaMA-Factory, TRL, torchtune or LitGPT.

    The settings come from a shipped preset or a preset file (--preset), or from a finished study's
    recommendation (--from RUN_DIR). The directory gets the tool's file with its own key names and a comment
    header (where the numbers come from, how to run it, what to fill in: your dataset), and preset.yaml, the
    full preset.

      axolotl train DIR/axolotl.yaml              llamafactory-cli train DIR/llama-factory.yaml
      trl sft --config DIR/trl-sft.yaml           litgpt finetune_lora --config DIR/litgpt-lora.yaml
      tune run lora_finetune_single_device --config DIR/torchtune.yaml
      PEFT: LoraConfig.from_pretrained(DIR)
    """
    if (from_run is None) == (preset is None):
        raise AdvisorError("give exactly one of --from RUN_DIR and --preset NAME_OR_PATH")
    if fmt not in FORMATS:
        raise AdvisorError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if from_run is not None:
        chosen, origin = preset_from_run(from_run)
    else:
        assert preset is not None
        chosen, origin = load_preset(preset), preset_origin(preset)
    written = export_preset(chosen, fmt, out, origin)
    if json_output:
        sys.stdout.write(json.dumps([str(path) for path in written]) + "\n")
        return 0
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write("use: " + USAGE[fmt].format(file=out / CONFIG_FILES[fmt], dir=out) + "\n")
    return 0


def preset_origin(name_or_path: str) -> str:
    """How an export names the preset it came from: a shipped preset by name, else the file."""
    path = preset_path(name_or_path)
    if path.resolve().parent == PRESETS_DIR.resolve():
        return f"the shipped preset {path.stem} (presets/{path.name})"
    return f"the preset file {path}"


def preset_from_run(run_dir: Path) -> tuple[Preset, str]:
    """The preset a finished study recommends, and how an export names it; AdvisorError for an unfinished one."""
    chosen, where, _ = read_study(run_dir)
    return chosen, where


def read_study(run_dir: Path) -> tuple[Preset, str, dict[str, Any]]:
    """A finished study's recommended preset, how an export names it, and the study's settings (settings.json)."""
    if not run_dir.is_dir():
        raise AdvisorError(f"no run directory {run_dir}")
    recommendation = _read_json(
        run_dir / "recommendation.json", f"{run_dir} has no recommendation.json: has its study finished?"
    )
    settings = _read_json(run_dir / "settings.json", f"{run_dir} has no settings.json: not a study's run directory")
    try:
        chosen = preset_from_recommendation(recommendation, settings)
    except KeyError as missing:
        raise AdvisorError(f"{run_dir}/recommendation.json has no {missing.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise AdvisorError(f"{run_dir}/recommendation.json: {error}") from None
    return chosen, study_origin(recommendation.get("trial"), run_dir), settings


def _read_json(path: Path, missing: str) -> dict[str, Any]:
    if not path.is_file():
        raise AdvisorError(missing)
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdvisorError(f"cannot read {path}: {error}") from None
    if not isinstance(fields, dict):
        raise AdvisorError(f"{path} does not hold a JSON object")
    return fields
