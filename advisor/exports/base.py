"""What every export format declares, and the helpers the formats share (pure: no torch, no yaml at import)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from advisor.exports.data import data_lines, loss_mode, pair_columns
from advisor.presets import Preset
from tuner.defaults import ATTENTION_MODULES, LORAPLUS_LR_RATIO, MLP_MODULES, VARIANT_LABELS
from tuner.models.load import hub_id
from tuner.paper import PAPER

MODEL_PLACEHOLDER = "REPLACE_WITH_BASE_MODEL"
DATA_PLACEHOLDER = "REPLACE_WITH_YOUR_DATASET"
ADAPTER = ("rank", "alpha", "targets", "dropout")
"""The preset fields every format carries: the LoRA adapter."""
TRAINING = ("learning_rate", "epochs", "batch_size", "seq_len")
"""The training settings most formats carry besides the adapter."""
HARDWARE_FIELDS = ("hardware", "gradient_checkpointing")
"""Where and how the preset trains: every format with training settings sets both explicitly in its tool's keys
(precision and device from `hardware`)."""
EVERY_FIELD = (*ADAPTER, *TRAINING, "warmup_ratio", "variant", *HARDWARE_FIELDS, "quantize")
"""Every preset field an export can carry: the adapter, the training settings, the warm-up share, the LoRA
variant (carried by the formats whose tool has a setting for one), the hardware, gradient checkpointing and the
base weights' quantisation (QLoRA's 'nf4', or None: 16-bit)."""
VARIANT_TEXT = {
    "rslora": "rank-stabilised LoRA (scaling alpha / sqrt(r))",
    "dora": "DoRA (weight-decomposed LoRA)",
    "pissa": "PiSSA initialisation (principal singular vectors, fast SVD with 4 iterations)",
    "loraplus": f"LoRA+ (B's learning rate {LORAPLUS_LR_RATIO}x A's)",
}
"""What each LoRA variant is, as export headers say it."""
QLORA_TEXT = "QLoRA: the base model's linear layers in 4-bit NF4 with double quantisation (Dettmers et al. 2023)"
"""What a QLoRA preset's base weights are, as export headers say it (the only quantisation a preset has: 'nf4')."""

Section = tuple[str, dict[str, Any]]
"""One part of a YAML export: its comment (may be empty) and its keys."""
Writer = Callable[[Preset, Path, str], list[Path]]
"""Writes the tool's file at a path (with a comment header) and anything it needs beside it; returns them."""
Reader = Callable[[dict[str, Any]], dict[str, Any]]
"""The carried preset values from a file's parsed fields; KeyError, TypeError or ValueError for a bad file."""


def _takes_any(preset: Preset) -> str | None:
    """No refusal: the tool takes every preset."""
    return None


@dataclass(frozen=True)
class ExportFormat:
    """One tool's config format: its names, its file, how to run it, what to fill in, its writer and its reader."""

    name: str
    """The --format value, e.g. 'llama-factory'."""
    tool: str
    """The tool's own spelling, e.g. 'LLaMA-Factory'."""
    file_name: str
    """The file the export writes beside preset.yaml."""
    usage: str
    """How to train with the exported file ({file}: its path, {dir}: its directory)."""
    fill_in: str
    """What the user fills in before training."""
    carried: tuple[str, ...]
    """The preset fields the file carries (what `read` returns, and `read_export` with it)."""
    write: Writer
    """Writes the file for a preset; see Writer."""
    read: Reader
    """Reads the file's parsed fields back; see Reader."""
    detect: Callable[[dict[str, Any]], bool] | None = None
    """Whether parsed fields are this tool's, for a file not named `file_name`; None: never guessed."""
    detect_order: int = 50
    """Where `detect` is tried among the formats: lower first; a rule on keys other tools may share goes last."""
    refusal: Callable[[Preset], str | None] = _takes_any
    """Why the tool cannot take a preset, or None when it can."""
    variants: tuple[str, ...] = ("lora",)
    """The LoRA variants the tool's file sets in its own keys; a preset with another exports as plain LoRA, and
    the header says so."""
    variant_notes: Mapping[str, str] = field(default_factory=dict)
    """Variant -> a sentence the header adds for it (how the tool saves it, or how to get it without a key)."""
    fill_in_data: str | None = None
    """What the user fills in for a preset that knows its data format, where it differs from `fill_in`."""
    qlora_note: str = ""
    """A sentence the header adds for a QLoRA preset: how the tool quantises, or (a format that does not carry
    `quantize`) where the user sets it up."""

    def __post_init__(self) -> None:
        missing = [name for name in ADAPTER if name not in self.carried]
        if missing:
            raise ValueError(f"format {self.name!r} must carry the adapter; it lacks {', '.join(missing)}")
        unknown = [name for name in self.carried if name not in EVERY_FIELD]
        if unknown:
            raise ValueError(f"format {self.name!r} carries {', '.join(unknown)}, not preset fields an export carries")
        if not self.name or not self.file_name or not self.usage or not self.fill_in:
            raise ValueError(f"format {self.name!r} needs a name, a file name, a usage line and what to fill in")
        if "lora" not in self.variants or (("variant" in self.carried) != (len(self.variants) > 1)):
            raise ValueError(f"format {self.name!r} carries 'variant' exactly when it sets a variant besides LoRA")

    def header(self, preset: Preset, origin: str, file_name: str, beside: bool = True) -> str:
        """The comment header of an exported file: by whom, from what, where the numbers come from, how to use it.

        With `beside`, it ends by pointing at preset.yaml (every file but preset.yaml itself)."""
        recipe = preset.recipe
        lora = recipe.lora
        budget = f", sized for {preset.memory_budget}" if preset.memory_budget else ""
        model = hub_id(preset.model) or f"{MODEL_PLACEHOLDER} (the preset names no model: fill in yours)"
        lines = [
            f"Exported by LoRA Advisor for {self.tool} from {origin}.",
            f"Preset {preset.name} ({preset.task}): {VARIANT_LABELS[lora.variant]} r={lora.rank}, "
            f"alpha={lora.alpha:g} on {lora.targets} linear layers, dropout {lora.dropout:g}; learning rate "
            f"{recipe.learning_rate:g} (cosine, {recipe.warmup_ratio:.0%} warm-up), {recipe.epochs} epochs, batch "
            f"{recipe.batch_size} x {recipe.seq_len} tokens{budget}.",
            *self.variant_lines(preset),
            *self.quantize_lines(preset),
            *data_lines(preset),
            f"Base model: {model}.",
            f"Numbers ({preset.source}): {preset.notes or 'no notes given.'}",
            f"Research: {PAPER}: alpha = 2r, all linear layers, rank 256 where memory allows, at least 4 epochs "
            "of instruction tuning, weight decay 0, gradient clipping 1.0. The paper trained with decoupled LionW; "
            "these settings assume AdamW, every tool's default.",
            "Use: " + self.usage.format(file=file_name, dir="this directory"),
            "Fill in before training: " + self.fill_in_for(preset) + ".",
        ]
        if beside:
            lines.append("The full preset, with its provenance, is beside this file in preset.yaml.")
        return "\n".join(
            textwrap.fill(
                line,
                width=108,  # the "# " of a comment line keeps it within 110 columns
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            for line in lines
        )

    def fill_in_for(self, preset: Preset) -> str:
        """What the user fills in before training with this preset's export."""
        return self.fill_in_data if self.fill_in_data and preset.data_format is not None else self.fill_in

    def variant_lines(self, preset: Preset) -> list[str]:
        """The header's line on the preset's LoRA variant: set in the tool's own key, or not there to be set."""
        lora = preset.recipe.lora
        if lora.variant == "lora":
            return []
        what = VARIANT_TEXT[lora.variant]
        if lora.variant in self.variants:
            line = f"Variant: {what}, set in {self.tool}'s own key below."
        else:
            line = f"Variant: {self.tool} has no setting for {what}, so this file trains plain LoRA."
            if lora.variant == "rslora":
                line += f" Plain LoRA with alpha = {lora.alpha * math.sqrt(lora.rank):.4g} scales as rsLoRA does."
        note = self.variant_notes.get(lora.variant)
        return [f"{line} {note}" if note else line]

    def quantize_lines(self, preset: Preset) -> list[str]:
        """The header's line on QLoRA (none for a 16-bit preset): set in the tool's own keys, or where to set it."""
        if preset.recipe.quantize is None:
            return []
        where = f", set in {self.tool}'s own keys below." if "quantize" in self.carried else "."
        return [f"{QLORA_TEXT}, computing in {compute_dtype_text(preset)}{where} {self.qlora_note}".rstrip()]


def compute_dtype_text(preset: Preset) -> str:
    """The dtype the 4-bit layers compute in, in words: the preset's own precision."""
    return "float32 (on the CPU)" if preset.on_cpu else "bf16"


def variant_of(flags: Mapping[str, bool]) -> str:
    """The one variant whose flag a file sets ('lora' for none); TypeError for several."""
    chosen = [variant for variant, on in flags.items() if on]
    if len(chosen) > 1:
        raise TypeError(f"{' and '.join(chosen)} together: LoRA Advisor's presets use one variant")
    return chosen[0] if chosen else "lora"


def loraplus_set(ratio: Any) -> bool:
    """Whether a file's LoRA+ ratio asks for LoRA+ (None: no); TypeError for a ratio other than ours."""
    if ratio is None:
        return False
    if as_float(ratio) != LORAPLUS_LR_RATIO:
        raise TypeError(f"loraplus_lr_ratio {ratio}: LoRA Advisor's LoRA+ uses {LORAPLUS_LR_RATIO}")
    return True


# --- writing ---------------------------------------------------------------------------------------------


ASSUMED_EXAMPLES = 1000
"""The training examples a preset that names none is assumed to have, where a tool counts warm-up in steps."""
FAMILIES = {"llama-2": "llama2", "smollm2": "smollm2"}
"""Model families by a fragment of the hub id (lower case): what picks each tool's chat template or builder."""


def precision(preset: Preset) -> str:
    """'bf16' on a GPU, 'fp32' on a CPU: the dtype the preset trains in."""
    return "fp32" if preset.on_cpu else "bf16"


def model_family(preset: Preset) -> str | None:
    """'llama2' or 'smollm2' for the presets' models (by hub id), else None."""
    model = (hub_id(preset.model) or "").lower()
    return next((family for fragment, family in FAMILIES.items() if fragment in model), None)


def warmup_steps(preset: Preset) -> int:
    """The warm-up in optimizer steps, for the preset's train_examples (else ASSUMED_EXAMPLES)."""
    if preset.train_examples is None:
        preset = replace(preset, train_examples=ASSUMED_EXAMPLES)
    steps = preset.warmup_steps()
    assert steps is not None
    return steps


def warmup_steps_note(preset: Preset) -> str:
    """How `warmup_steps` was counted, and how to count it for other data, for a header or a comment."""
    recipe = preset.recipe
    examples = preset.train_examples or ASSUMED_EXAMPLES
    assumed = "" if preset.train_examples else " (assumed: the preset names no data size)"
    per_epoch = math.ceil(examples / recipe.batch_size)
    return (
        f"{warmup_steps(preset)} warm-up steps = {recipe.warmup_ratio:.0%} of {recipe.epochs} epochs x {per_epoch:,} "
        f"steps ({examples:,} examples{assumed} / batch {recipe.batch_size}); for your data: "
        f"{recipe.warmup_ratio:g} x epochs x examples / batch"
    )


def module_names(targets: str) -> list[str]:
    """The Llama-style linear layers a target set names (attention's q/k/v/o_proj, the MLP's gate/up/down_proj)."""
    return [
        *(ATTENTION_MODULES if targets in ("attention", "all") else ()),
        *(MLP_MODULES if targets != "attention" else ()),
    ]


def expected_settings(preset: Preset) -> dict[str, Any]:
    """What a tool's own parser must read from an export of the preset: the values compared by
    scripts/validate_exports.py (learning rate, adapter, epochs, warm-up, precision, device, checkpointing, the
    quantisation: 'nf4' for QLoRA, None for 16 bits; and where the preset knows its data, its format and which
    tokens carry the loss, and the columns format's column names)."""
    recipe = preset.recipe
    lora = recipe.lora
    data = {} if preset.data_format is None else {"data_format": preset.data_format, "loss": loss_mode(preset)}
    if preset.data_format == "columns":
        data["columns"] = list(pair_columns(preset))
    return {
        "learning_rate": recipe.learning_rate,
        "rank": lora.rank,
        "alpha": lora.alpha,
        "dropout": lora.dropout,
        "targets": lora.targets,
        "target_modules": module_names(lora.targets),
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "seq_len": recipe.seq_len,
        "warmup_ratio": recipe.warmup_ratio,
        "warmup_steps": warmup_steps(preset),
        "hardware": preset.hardware,
        "precision": precision(preset),
        "gradient_checkpointing": preset.gradient_checkpointing,
        "family": model_family(preset),
        "quantize": recipe.quantize,
        **data,
    }


def whole(value: float) -> int | float:
    """An integral float as an int (most tools type alpha as int), else the float."""
    return int(value) if float(value).is_integer() else value


def model_or_placeholder(preset: Preset) -> str:
    """The preset's model as its hub id, or the placeholder when it names none."""
    return hub_id(preset.model) or MODEL_PLACEHOLDER


def note(*paragraphs: str, width: int = 108) -> str:
    """A section comment's text: each paragraph wrapped to `width` (108: with its '# ', a line fits 110 columns)."""
    return "\n".join(
        textwrap.fill(each, width=width, break_long_words=False, break_on_hyphens=False) for each in paragraphs
    )


def comment(text: str) -> str:
    """TEXT as '# ' comment lines."""
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def yaml_document(header: str, sections: Sequence[Section]) -> str:
    """A YAML file: the header as '#' lines, then each section's comment and its keys."""
    import yaml

    parts = [comment(header)]
    for note, mapping in sections:
        body = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True, width=110, default_flow_style=False)
        parts.append("\n" + (comment(note) if note else "") + body)
    return "".join(parts)


def yaml_writer(sections: Callable[[Preset], Sequence[Section]]) -> Writer:
    """A writer that puts the header and the preset's sections in one YAML file."""

    def write(preset: Preset, path: Path, header: str) -> list[Path]:
        path.write_text(yaml_document(header, sections(preset)), encoding="utf-8")
        return [path]

    return write


# --- reading ---------------------------------------------------------------------------------------------


def as_float(value: Any) -> float:
    """A number as float, also from a string such as '1e-4' (which YAML 1.1 does not read as a number)."""
    if isinstance(value, bool):
        raise TypeError(f"a number, got {value!r}")
    return float(value)


def as_int(value: Any) -> int:
    """A whole number as int, also from a float or a string; TypeError for a fraction."""
    number = as_float(value)
    if not number.is_integer():
        raise TypeError(f"a whole number, got {value!r}")
    return int(number)


def targets_of(names: Any) -> str:
    """'attention', 'mlp' or 'all' from a module list, a comma-separated string, 'all-linear' or 'all'."""
    if isinstance(names, str):
        if names.strip() in ("all-linear", "all"):
            return "all"
        names = [name.strip() for name in names.split(",")]
    chosen = set(names or ())
    sets = {
        "attention": set(ATTENTION_MODULES),
        "mlp": set(MLP_MODULES),
        "all": set(ATTENTION_MODULES) | set(MLP_MODULES),
    }
    for targets, modules in sets.items():
        if chosen == modules:
            return targets
    raise TypeError(f"target modules {sorted(chosen)}: not attention, mlp or all of a Llama-style layer")


def adapter_values(rank: Any, alpha: Any, targets: str, dropout: Any) -> dict[str, Any]:
    """The adapter's carried values (rank, alpha, targets, dropout) from a file's raw ones."""
    return {"rank": as_int(rank), "alpha": as_float(alpha), "targets": targets, "dropout": as_float(dropout or 0.0)}


def training_values(fields: dict[str, Any], *, epochs: str, batch: str, seq_len: str) -> dict[str, Any]:
    """Learning rate, epochs, batch and row length from a flat config under the tool's key names.

    The batch is the per-device batch times gradient_accumulation_steps (one device, as the presets assume)."""
    return {
        "learning_rate": as_float(fields["learning_rate"]),
        "epochs": as_int(fields[epochs]),
        "batch_size": as_int(fields[batch]) * as_int(fields.get("gradient_accumulation_steps", 1)),
        "seq_len": as_int(fields[seq_len]),
    }
