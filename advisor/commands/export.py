"""`advisor export`: a shipped preset, a preset file or a finished study's recommendation, as another tool's config."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from advisor.exports import CONFIG_FILES, FORMATS, USAGE, export_preset, for_hardware
from advisor.flags import option
from advisor.presets import HARDWARE, PRESETS_DIR, load_preset, preset_from_run, preset_path
from tuner.errors import AdvisorError
from tuner.rundir import check_out_dir


@dataclass(frozen=True, kw_only=True)
class ExportArgs:
    """`advisor export`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py).
    No --model or --data-dir: they do not apply to an export."""

    from_run: Path | None = option(None, name="--from", metavar="RUN_DIR", one_of="source", required=True)
    """a finished study's run directory"""
    preset: str | None = option(None, metavar="NAME_OR_PATH", one_of="source", required=True)
    """a shipped preset's name (e.g. math-24gib) or a file"""
    format: str = option(choices=FORMATS)
    """the tool to write for"""
    out: Path = option(metavar="DIR")
    """directory for the config and preset.yaml"""
    hardware: str | None = option(None, choices=HARDWARE, shown_default="the preset's; a study's: where it ran")
    """train on a GPU (bf16) or a CPU (float32) in the tool"""
    force: bool = False
    """write into an --out that holds something (an adapter, a run, an export), replacing same-named files"""
    json: bool = False
    """print the files written as a JSON list"""


def export(args: ExportArgs) -> int:
    """Write LoRA settings as another tool's own config: PEFT, axolotl, LLaMA-Factory, TRL, torchtune or LitGPT.

    The settings come from a shipped preset or a preset file (--preset), or from a finished study's
    recommendation (--from RUN_DIR). The directory gets the tool's file with its own key names and a comment
    header (where the numbers come from, how to run it, what to fill in: your dataset), and preset.yaml, the
    full preset. Precision and device follow the preset's hardware (a study's: where it ran); --hardware gpu or
    cpu changes it for the tool, e.g. to train on a GPU what a study found on a CPU. A directory that holds
    anything already (a trained adapter, a run, an earlier export) is refused unless --force is given.

      axolotl train DIR/axolotl.yaml
      llamafactory-cli train DIR/llama-factory.yaml
      trl sft --config DIR/trl-sft.yaml
      litgpt finetune_lora --config DIR/litgpt-lora.yaml
      tune run lora_finetune_single_device --config DIR/torchtune.yaml
      PEFT: LoraConfig.from_pretrained(DIR)
    """
    if (args.from_run is None) == (args.preset is None):
        raise AdvisorError("give exactly one of --from RUN_DIR and --preset NAME_OR_PATH")
    if args.format not in FORMATS:
        raise AdvisorError(f"unknown format {args.format!r} (known: {', '.join(FORMATS)})")
    check_out_dir(args.out, "export", force=args.force)
    if args.from_run is not None:
        chosen, finished = preset_from_run(args.from_run)
        origin = finished.origin()
    else:
        assert args.preset is not None
        chosen, origin = load_preset(args.preset), preset_origin(args.preset)
    chosen, origin = for_hardware(chosen, origin, args.hardware)
    written = export_preset(chosen, args.format, args.out, origin)
    if args.json:
        sys.stdout.write(json.dumps([str(path) for path in written]) + "\n")
        return 0
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(
        "use: " + USAGE[args.format].format(file=args.out / CONFIG_FILES[args.format], dir=args.out) + "\n"
    )
    return 0


def preset_origin(name_or_path: str) -> str:
    """How an export names the preset it came from: a shipped preset by name, else the file."""
    path = preset_path(name_or_path)
    if path.resolve().parent == PRESETS_DIR.resolve():
        return f"the shipped preset {path.stem} (presets/{path.name})"
    return f"the preset file {path}"
