"""Model identities: a GGUF file's cache and identity follow its content, not where or when it was installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuner.models.load import ModelSource, gguf_cache_dir, model_identity


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ADVISOR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def gguf(path: Path, content: bytes) -> ModelSource:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return ModelSource(path.stem, "gguf", str(path))


def test_a_reinstalled_gguf_keeps_its_cache_and_identity(tmp_path, cache):
    first = gguf(tmp_path / "site-a" / "Model.Q4_1.gguf", b"GGUF" + bytes(range(256)) * 64)
    again = gguf(tmp_path / "site-b" / "Model.Q4_1.gguf", b"GGUF" + bytes(range(256)) * 64)
    os.utime(again.location, ns=(1_000_000_000, 1_000_000_000))  # installed at another time
    assert model_identity(first) == model_identity(again)
    assert gguf_cache_dir(Path(first.location)) == gguf_cache_dir(Path(again.location))
    assert gguf_cache_dir(Path(first.location)).parent == cache / "models"
    assert model_identity(first).startswith("Model.Q4_1-")


def test_other_weights_are_another_identity_even_at_the_same_path(tmp_path):
    source = gguf(tmp_path / "Model.Q4_1.gguf", b"GGUF" + b"\x01" * 4096)
    before = model_identity(source)
    gguf(tmp_path / "Model.Q4_1.gguf", b"GGUF" + b"\x02" * 4096)  # the same size, rewritten in place
    os.utime(source.location, ns=(2_000_000_000, 2_000_000_000))
    assert model_identity(source) != before
