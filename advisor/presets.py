"""Presets: a LoRA configuration with its training settings, as commented YAML (pure: no torch).

A preset is what a study recommends, or what the paper used, in a form another run (or another tool,
through `advisor export`) can start from. Shipped presets live in the repository's `presets/` folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner.data.encode import DATA_FILE
from tuner.data.formats import FORMATS
from tuner.defaults import DEFAULT_MAX_GRAD_NORM, REGIMES, TASKS
from tuner.errors import AdvisorError
from tuner.fullrun.handover import FinishedStudy, Overrides, read_study, run_settings, study_origin
from tuner.memory.sizes import format_size, parse_size
from tuner.settings import DataSettings, LoraSettings, RunSettings, StudySettings, TrainingRecipe

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"
"""The shipped presets (the repository's presets/ folder)."""
SOURCES = ("paper", "measured", "study")
HARDWARE = ("gpu", "cpu")
"""Where a preset trains: one CUDA GPU in bfloat16, or a CPU in float32. Exports set precision, device and
attention from it in each tool's own keys."""
"""Where a preset's numbers come from: the paper's settings, our own measured runs, or one study's result."""
PRESET_SUFFIXES = (".yaml", ".yml")
DEFAULT_COLUMNS = (DataSettings.prompt_column, DataSettings.response_column)
"""The columns format's prompt and response column names where a study names none (--prompt-column and
--response-column's defaults)."""


@dataclass(frozen=True)
class Preset:
    """A LoRA configuration and how to train it, named and with its provenance."""

    name: str
    """Short name; a shipped preset's file is presets/NAME.yaml."""
    task: str
    """'code', 'math' or 'custom'."""
    recipe: TrainingRecipe
    """The adapter (rank, alpha, targets, dropout, variant) and how it trains (rate, epochs, batch, length, warm-up)."""
    model: str | None = None
    """The model the preset was made for (None: any)."""
    memory_budget: str | None = None
    """The memory budget it was sized for, as written (e.g. '24GiB'), or None."""
    source: str = "paper"
    """'paper', 'measured' or 'study' (see SOURCES)."""
    notes: str = ""
    """Where the numbers come from, in a sentence or two."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Provenance details (run directory, trial, scores); carried along, never interpreted."""
    hardware: str = "gpu"
    """'gpu' (bfloat16 on one CUDA GPU) or 'cpu' (float32); see HARDWARE."""
    gradient_checkpointing: bool = False
    """Whether activations are recomputed in the backward pass (what the memory budget was sized with)."""
    train_examples: int | None = None
    """The training examples the preset was sized for: tools that count warm-up in steps get
    `warmup_steps()` for this many (None: an export says how to count them for your data)."""
    data_format: str | None = None
    """The training data's format (one of tuner.data.formats.FORMATS), which exports set in each tool's own dataset
    keys; None: not known (a shipped preset, or a study from before studies recorded it)."""
    regime: str = "ift"
    """'ift' (loss on the responses) or 'cpt' (continued pretraining: loss on every token); see REGIMES."""
    columns: tuple[str, str] | None = None
    """The prompt and response column names of data_format 'columns' data, where the study named its own (None: the
    DEFAULT_COLUMNS), which exports set in each tool's own column keys."""

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ValueError(f"a preset name is a plain file name, got {self.name!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.hardware not in HARDWARE:
            raise ValueError(f"hardware must be one of {', '.join(HARDWARE)}, got {self.hardware!r}")
        if self.train_examples is not None and self.train_examples < 1:
            raise ValueError(f"train_examples must be at least 1, got {self.train_examples}")
        if self.memory_budget is not None:
            parse_size(self.memory_budget)  # ValueError naming the bad size
        if self.data_format is not None and self.data_format not in FORMATS:
            raise ValueError(f"data_format must be one of {', '.join(FORMATS)}, got {self.data_format!r}")
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {self.regime!r}")
        if self.data_format == "text" and self.regime == "ift":
            raise ValueError("data_format text is plain text, with no responses to learn: its regime is cpt")
        if self.columns is not None:
            if len(self.columns) != 2 or not all(isinstance(name, str) and name.strip() for name in self.columns):
                raise ValueError(f"columns must be the prompt and response column names, got {list(self.columns)!r}")
            if self.data_format != "columns":
                raise ValueError(f"columns names the columns of data_format columns, not of {self.data_format}")

    @property
    def on_cpu(self) -> bool:
        """Trained on a CPU, in float32."""
        return self.hardware == "cpu"

    def steps_per_epoch(self) -> int | None:
        """Optimizer steps in one epoch of `train_examples` unpacked examples at the preset's batch (None: unknown)."""
        if self.train_examples is None:
            return None
        return math.ceil(self.train_examples / self.recipe.batch_size)

    def warmup_steps(self) -> int | None:
        """The warm-up as optimizer steps: warmup_ratio of every epoch's steps, at least 1 where there is a warm-up
        (None: train_examples unknown)."""
        per_epoch = self.steps_per_epoch()
        if per_epoch is None:
            return None
        steps = self.recipe.warmup_ratio * per_epoch * self.recipe.epochs
        return max(1, round(steps)) if self.recipe.warmup_ratio > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        """The preset as plain data, in the order its YAML file lists it (the recipe's fields at the top level)."""
        fields = asdict(self)
        recipe = fields.pop("recipe")
        if recipe["max_grad_norm"] == DEFAULT_MAX_GRAD_NORM:
            recipe.pop("max_grad_norm")  # written only where a preset changes it
        if recipe["lora"]["variant"] == "lora":
            recipe["lora"].pop("variant")  # plain LoRA, as every preset from before variants existed
        if recipe["method"] == "lora":
            recipe.pop("method")  # presets are LoRA recipes; a full run's settings are only ever given by hand
        if recipe["quantize"] is None:
            recipe.pop("quantize")  # 16-bit, as every preset from before QLoRA
        flat = {"name": fields.pop("name"), "task": fields.pop("task"), **recipe, **fields}
        if not flat["extra"]:
            flat.pop("extra")
        if flat["train_examples"] is None:
            flat.pop("train_examples")
        if flat["data_format"] is None:
            flat.pop("data_format")  # written only where it is known, as no shipped preset knows it
        if flat["regime"] == "ift":
            flat.pop("regime")  # instruction tuning, as every preset from before regimes existed
        if flat["columns"] is None:
            flat.pop("columns")  # written only where a study named its own
        else:
            flat["columns"] = list(flat["columns"])
        extra = flat.pop("extra", None)
        if extra:
            flat["extra"] = extra  # provenance details last
        return flat


_REQUIRED = ("name", "task", "lora", "learning_rate")
_LORA_KEYS = ("rank", "alpha", "targets", "dropout", "variant")


def preset_from_dict(fields: Any, where: str = "preset") -> Preset:
    """A Preset from parsed YAML, or AdvisorError naming the first thing wrong with it."""
    if not isinstance(fields, dict):
        raise AdvisorError(f"{where}: expected a mapping of preset fields, got {type(fields).__name__}")
    known = (set(Preset.__dataclass_fields__) - {"recipe"}) | set(TrainingRecipe.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise AdvisorError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise AdvisorError(f"{where}: missing field {missing[0]!r}")
    lora = fields["lora"]
    if not isinstance(lora, dict):
        raise AdvisorError(f"{where}: 'lora' must be a mapping with rank, alpha and targets")
    unknown = sorted(set(lora) - set(_LORA_KEYS))
    if unknown:
        raise AdvisorError(f"{where}: unknown lora field {unknown[0]!r} (known: {', '.join(_LORA_KEYS)})")
    try:
        adapter = LoraSettings(
            rank=_number(lora, "rank", int, where),
            alpha=_number(lora, "alpha", float, where),
            targets=str(lora.get("targets", "")),
            dropout=_number(lora, "dropout", float, where, default=0.0),
            variant=str(lora.get("variant", "lora")),
        )
        numbers = {
            name: _number(fields, name, kind, where)
            for name, kind in (
                ("learning_rate", float),
                ("epochs", int),
                ("batch_size", int),
                ("seq_len", int),
                ("warmup_ratio", float),
                ("max_grad_norm", float),
            )
            if name in fields
        }
        text = {
            name: None if fields[name] is None else str(fields[name])
            for name in (
                "name",
                "task",
                "model",
                "memory_budget",
                "source",
                "notes",
                "hardware",
                "data_format",
                "regime",
            )
            if name in fields
        }
        if text.get("data_format") == "text" and "regime" not in fields:
            text["regime"] = "cpt"  # plain text trains as continued pretraining, as the engine reads it
        switches = {name: _switch(fields, name, where) for name in ("gradient_checkpointing",) if name in fields}
        if fields.get("train_examples") is not None:
            switches["train_examples"] = _number(fields, "train_examples", int, where)
        if fields.get("columns") is not None:
            switches["columns"] = _columns(fields["columns"], where)
        extra = fields.get("extra") or {}
        if not isinstance(extra, dict):
            raise AdvisorError(f"{where}: 'extra' must be a mapping")
        quantize = fields.get("quantize")
        if quantize is not None and not isinstance(quantize, str):
            raise AdvisorError(f"{where}: quantize must be nf4 (QLoRA) or absent, got {quantize!r}")
        recipe = TrainingRecipe(lora=adapter, quantize=quantize, **numbers)
        return Preset(recipe=recipe, extra=extra, **text, **switches)  # type: ignore[arg-type]
    except ValueError as error:
        raise AdvisorError(f"{where}: {error}") from None


def _columns(value: Any, where: str) -> tuple[str, str]:
    """The columns field as a pair of names, or AdvisorError naming it."""
    named = isinstance(value, list) and all(isinstance(name, str) and name.strip() for name in value)
    if not named or len(value) != 2:
        raise AdvisorError(
            f"{where}: columns must be the prompt and response column names, [PROMPT, RESPONSE], got {value!r}"
        )
    return value[0], value[1]


def _switch(fields: dict[str, Any], name: str, where: str) -> bool:
    value = fields[name]
    if not isinstance(value, bool):
        raise AdvisorError(f"{where}: {name} must be true or false, got {value!r}")
    return value


def _number(fields: dict[str, Any], name: str, kind: type, where: str, default: Any = None) -> Any:
    value = fields.get(name, default)
    if kind is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 1e-4, written without a dot, as a string; accept what float() reads.
        try:
            value = float(value)
        except ValueError:
            pass
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise AdvisorError(f"{where}: {name} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise AdvisorError(f"{where}: {name} must be a whole number, got {value!r}")
    return kind(value)


def preset_yaml(preset: Preset, header: str = "") -> str:
    """The preset as YAML, after a comment header (one '# ' line per header line)."""
    import yaml

    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    body = yaml.safe_dump(preset.to_dict(), sort_keys=False, allow_unicode=True, width=110)
    return comment + body


def write_preset(preset: Preset, path: Path, header: str = "") -> Path:
    """Write the preset as commented YAML; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(preset_yaml(preset, header), encoding="utf-8")
    return path


def shipped_presets() -> list[str]:
    """Names of the presets shipped in presets/."""
    if not PRESETS_DIR.is_dir():
        return []
    return sorted(p.stem for p in PRESETS_DIR.iterdir() if p.suffix in PRESET_SUFFIXES)


def preset_path(name_or_path: str) -> Path:
    """The file a preset name or path refers to, or AdvisorError saying where it was looked for."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "preset.yaml", path / "lora-advisor.yaml"):
            if candidate.is_file():
                return candidate
        raise AdvisorError(f"{path} is a directory without a preset.yaml")
    shipped = PRESETS_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_presets()) or "none"
    raise AdvisorError(f"no preset {name_or_path!r}: not a file, and not one of the shipped presets ({names})")


def load_preset(name_or_path: str) -> Preset:
    """A shipped preset by name, or a preset file; AdvisorError for a missing or malformed one."""
    import yaml

    path = preset_path(name_or_path)
    try:
        fields = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise AdvisorError(f"cannot read preset {path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise AdvisorError(f"preset {path} is not valid YAML{at}: {problem}") from None
    return preset_from_dict(fields, where=f"preset {path}")


def preset_from_study(finished: FinishedStudy, name: str | None = None) -> Preset:
    """The preset a finished study recommends: its recipe, model and memory budget, with where it came from."""
    rec = finished.recommendation
    where = study_origin(rec.trial, rec.run_dir)  # where the study ran, as it recorded itself
    extra: dict[str, Any] = {"run_dir": rec.run_dir, "trial": rec.trial}
    objective = rec.objective.to_json()
    if objective:
        extra["objective"] = objective
    data = study_data(finished.run_dir)
    return Preset(
        name=name or f"{rec.task}-study",
        task=rec.task,
        recipe=finished.recipe(),
        model=rec.model,
        memory_budget=_budget_text(finished.settings.memory_budget),
        source="study",
        notes=f"Recommended by {where}.",
        extra=extra,
        hardware="cpu" if (rec.runtime or "").startswith("CPU") else "gpu",
        gradient_checkpointing=rec.gradient_checkpointing,
        train_examples=rec.data.train_examples if rec.data is not None else None,
        **data,
        columns=study_columns(finished.settings, data.get("data_format")),
    )


def study_columns(settings: StudySettings, data_format: str | None) -> tuple[str, str] | None:
    """The prompt and response columns a study of data_format 'columns' data read, where not the DEFAULT_COLUMNS."""
    columns = (settings.data.prompt_column, settings.data.response_column)
    return columns if data_format == "columns" and columns != DEFAULT_COLUMNS else None


def study_data(run_dir: Path) -> dict[str, str]:
    """The data format and regime a study recorded in its run directory's data.json (tuner.data.encode.DATA_FILE);
    none for a study from before it was written. AdvisorError for an unreadable one."""
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return {}
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))
        found = {"data_format": counts["format"], "regime": counts["regime"]}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdvisorError(f"cannot read {path}: {error}") from None
    except KeyError as missing:
        raise AdvisorError(f"{path} has no {missing.args[0]!r}: not a study's record of its data") from None
    except TypeError:
        raise AdvisorError(f"{path} does not hold a mapping: not a study's record of its data") from None
    if found["data_format"] not in FORMATS or found["regime"] not in REGIMES:
        raise AdvisorError(f"{path}: format {found['data_format']!r} with regime {found['regime']!r} is not one known")
    return {name: str(value) for name, value in found.items()}


def preset_from_run(run_dir: Path) -> tuple[Preset, FinishedStudy]:
    """The preset a finished study recommends, and the study (its settings, its origin); AdvisorError for an
    unfinished one."""
    finished = read_study(run_dir)
    return preset_from_study(finished), finished


def explicit_preset(overrides: Overrides) -> Preset:
    """A preset from settings given on the command line: the paper's defaults for what is not given."""
    recipe = overrides.explicit_recipe()
    return Preset(name="command-line", task=overrides.task or "", recipe=recipe, notes="Given on the command line.")


def preset_run_settings(preset: Preset, overrides: Overrides, study: StudySettings | None = None) -> RunSettings:
    """The full run's settings from a preset (and the study it came from), with the overrides on top."""
    from tuner.models.load import DEFAULT_MODEL

    model = (study.model if study is not None else None) or preset.model or DEFAULT_MODEL
    return run_settings(preset.recipe, preset.task, model, overrides, study)


def _budget_text(value: object) -> str | None:
    if not isinstance(value, int | float):
        return None
    return format_size(float(value)).replace(" ", "")
