"""A model's hidden size and context length, read from its config or GGUF header before any weight loads (pure).

A rank above the hidden size or rows longer than the context are refused here, in a fraction of a second, rather
than after the tokenizer, the data and the weights have loaded. A GGUF file's header is read directly: its
config would otherwise need the whole model dequantised first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tuner.errors import AdvisorError

HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")
"""Where a transformers config keeps its width, by family (Llama-style first)."""
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
"""Where a transformers config keeps its context length, by family (Llama-style first)."""
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@dataclass(frozen=True)
class ModelLimits:
    """The sizes a training setup must stay within; None where the model does not say."""

    hidden: int | None
    """The model's width (hidden_size): a LoRA rank above it adds nothing a full update could not."""
    context: int | None
    """The longest row the model's positions cover (max_position_embeddings)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelLimits:
        """The limits in a transformers config.json dict."""
        return cls(_first_int(config, HIDDEN_KEYS), _first_int(config, CONTEXT_KEYS))


def _first_int(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    return next((config[key] for key in keys if isinstance(config.get(key), int) and config[key] > 0), None)


def model_limits(model: str) -> ModelLimits:
    """A model's limits without loading it: a GGUF header, a config.json, or a hub model's config."""
    from tuner.models.load import model_config, resolve_model

    source = resolve_model(model)
    if source.kind != "gguf":
        return ModelLimits.from_config(model_config(source))
    fields = gguf_fields(Path(source.location))
    arch = fields.get("general.architecture")
    hidden, context = fields.get(f"{arch}.embedding_length"), fields.get(f"{arch}.context_length")
    return ModelLimits(hidden if isinstance(hidden, int) else None, context if isinstance(context, int) else None)


def check_fits_model(model: str, *, seq_len: int | None = None, rank: int | None = None) -> None:
    """AdvisorError when rows of SEQ_LEN tokens outrun the model's context, or RANK exceeds its hidden size."""
    if seq_len is None and rank is None:
        return
    limits = model_limits(model)
    if seq_len is not None and limits.context is not None and seq_len > limits.context:
        raise AdvisorError(
            f"rows of {seq_len:,} tokens are longer than {model}'s context of {limits.context:,} tokens "
            "(max_position_embeddings): give a shorter row length"
        )
    if rank is not None and limits.hidden is not None and rank > limits.hidden:
        raise AdvisorError(
            f"LoRA rank {rank:,} is above {model}'s hidden size of {limits.hidden:,}: "
            "an adapter's rank is at most the width of the layers it adapts"
        )


def gguf_fields(path: Path) -> dict[str, object]:
    """The scalar and string fields of a GGUF file's header (arrays, such as the vocabulary, skipped); {} for a
    file that is not GGUF version 2 or 3, or is cut short."""
    try:
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF" or _read(handle, "<I") not in (2, 3):
                return {}
            _tensors, count = _read(handle, "<Q"), _read(handle, "<Q")
            fields: dict[str, object] = {}
            for _ in range(count):
                key = _string(handle)
                kind = _read(handle, "<I")
                if kind == _GGUF_ARRAY:
                    _skip_array(handle)
                else:
                    fields[key] = _value(handle, kind)
            return fields
    except (OSError, struct.error, UnicodeDecodeError, ValueError):
        return {}


def _read(handle: IO[bytes], fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("the GGUF header is cut short")
    return struct.unpack(fmt, data)[0]


def _string(handle: IO[bytes]) -> str:
    length = _read(handle, "<Q")
    return handle.read(length).decode("utf-8")


def _value(handle: IO[bytes], kind: int) -> object:
    if kind == _GGUF_STRING:
        return _string(handle)
    if kind not in _GGUF_SCALARS:
        raise ValueError(f"unknown GGUF value type {kind}")
    return _read(handle, _GGUF_SCALARS[kind])


def _skip_array(handle: IO[bytes]) -> None:
    kind, length = _read(handle, "<I"), _read(handle, "<Q")
    if kind in _GGUF_SCALARS:
        handle.seek(length * struct.calcsize(_GGUF_SCALARS[kind]), 1)
        return
    for _ in range(length):
        if kind == _GGUF_STRING:
            handle.seek(_read(handle, "<Q"), 1)
        elif kind == _GGUF_ARRAY:
            _skip_array(handle)
        else:
            raise ValueError(f"unknown GGUF value type {kind}")
