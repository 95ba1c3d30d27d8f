"""`advisor export`: a shipped preset, a preset file or a finished study's recommendation, as another tool's config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from advisor.exports import CONFIG_FILES, FORMATS, USAGE, export_preset, for_hardware
from advisor.presets import PRESETS_DIR, load_preset, preset_from_run, preset_path
from tuner.errors import AdvisorError
from tuner.rundir import check_out_dir


def export(
    *,
    from_run: Path | None = None,
    preset: str | None = None,
    fmt: str,
    out: Path,
    json_output: bool = False,
    hardware: str | None = None,
    force: bool = False,
) -> int:
    """Write LoRA settings as another tool's own config: PEFT, axolotl, LLaMA-Factory, TRL, torchtune or LitGPT.

    The settings come from a shipped preset or a preset file (--preset), or from a finished study's
    recommendation (--from RUN_DIR). The directory gets the tool's file with its own key names and a comment
    header (where the numbers come from, how to run it, what to fill in: your dataset), and preset.yaml, the
    full preset. Precision and device follow the preset's hardware (a study's: where it ran); --hardware gpu or
    cpu changes it for the tool, e.g. to train on a GPU what a study found on a CPU. A directory that holds
    anything already (a trained adapter, a run, an earlier export) is refused unless --force is given.

      axolotl train DIR/axolotl.yaml              llamafactory-cli train DIR/llama-factory.yaml
      trl sft --config DIR/trl-sft.yaml           litgpt finetune_lora --config DIR/litgpt-lora.yaml
      tune run lora_finetune_single_device --config DIR/torchtune.yaml
      PEFT: LoraConfig.from_pretrained(DIR)
    """
    if (from_run is None) == (preset is None):
        raise AdvisorError("give exactly one of --from RUN_DIR and --preset NAME_OR_PATH")
    if fmt not in FORMATS:
        raise AdvisorError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    check_out_dir(out, "export", force=force)
    if from_run is not None:
        chosen, finished = preset_from_run(from_run)
        origin = finished.origin()
    else:
        assert preset is not None
        chosen, origin = load_preset(preset), preset_origin(preset)
    chosen, origin = for_hardware(chosen, origin, hardware)
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
