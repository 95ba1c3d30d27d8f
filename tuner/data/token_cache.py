"""Tokenised task examples and general text, cached on disk under the advisor's cache and keyed by what they are made
of: the texts themselves, the tokenizer (its vocabulary, merges, chat template) and the encoding's version.

A study, the full run after it, a resumed study and every worker on the machine tokenise a dataset once instead of
each time. A file that cannot be read is
treated as missing and a cache that cannot be written is skipped: the cache only ever saves time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ENCODING_VERSION = 2
"""Part of every key: bump it when tuner.data.render or data.prepare.encode_texts change what they produce from the
same texts and tokenizer, so that no file written before is read after."""

CACHE_DIR = "tokens"
"""The folder under the advisor's cache (tuner.models.load.cache_root)."""

Encoded = tuple[list[list[int]], list[list[bool]]]
"""Token ids per item, and per token whether it carries loss."""


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A digest of everything in a fast tokenizer that decides its ids: the backend's whole serialised form (vocabulary,
    merges, normaliser, added tokens), the chat template and the end-of-sequence token; None for a slow tokenizer,
    which has no single serialised form (it is then not cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    parts = (
        type(tokenizer).__name__,
        backend.to_str(),
        str(getattr(tokenizer, "chat_template", None) or ""),
        str(tokenizer.eos_token or ""),
        str(getattr(tokenizer, "split_special_tokens", False)),
    )
    return _digest(parts)


def cached_encoding(
    kind: str,
    texts: Sequence[Sequence[str]],
    tokenizer: PreTrainedTokenizerBase,
    encode: Callable[[], Encoded],
) -> Encoded:
    """`encode()`'s result for these texts and this tokenizer, read from the cache when an earlier call wrote it.

    `kind` names what the texts are ("chat", "text", "general"); `texts` are the columns the encoding reads, whole.
    """
    from tuner.models.load import cache_root

    identity = tokenizer_identity(tokenizer)
    if identity is None:
        return encode()
    key = _digest((kind, str(ENCODING_VERSION), identity, *(_digest(column) for column in texts)))
    path = cache_root() / CACHE_DIR / f"{kind}-{key}.npz"
    found = _read(path)
    if found is not None:
        return found
    encoded = encode()
    _write(path, encoded)
    return encoded


def _digest(parts: Sequence[str]) -> str:
    """A digest of the strings in order; each is length-prefixed so that no two sequences collide by concatenation."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _read(path: Path) -> Encoded | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as stored:
            ids, lengths, trained = stored["ids"], stored["lengths"], stored["trained"]
    except Exception:  # noqa: BLE001 (a missing, truncated or foreign file is a miss: np.load raises several types)
        return None
    if int(lengths.sum()) != len(ids) or len(trained) != len(ids):
        return None
    flat, flags, items, masks, start = ids.tolist(), trained.astype(bool).tolist(), [], [], 0
    for length in lengths.tolist():
        items.append(flat[start : start + length])
        masks.append(flags[start : start + length])
        start += length
    return items, masks


def _write(path: Path, encoded: Encoded) -> None:
    """Write atomically (a unique temporary file renamed over the name), so concurrent workers never read half."""
    import numpy as np

    items, masks = encoded
    lengths = np.fromiter((len(item) for item in items), dtype=np.int64, count=len(items))
    flat = np.fromiter((token for item in items for token in item), dtype=np.int32, count=int(lengths.sum()))
    trained = np.fromiter((flag for mask in masks for flag in mask), dtype=np.uint8, count=int(lengths.sum()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, ids=flat, lengths=lengths, trained=trained)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return  # an unwritable cache costs the next run the encoding again, nothing else
