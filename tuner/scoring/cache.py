"""Base-model scores on disk, keyed by weights, benchmark and settings, so a base model is never scored twice."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tuner.models.load import cache_root


class ScoreCache:
    """One JSON file per (model identity, benchmark, limit, seed, prompt format, data source, scoring version)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "scores"

    def _path(self, key: dict[str, object]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.root / f"{key['task']}-{digest}.json"

    def get(self, key: dict[str, object]) -> dict[str, Any] | None:
        """The stored score for this key, or None (a damaged file counts as missing)."""
        path = self._path(key)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return stored.get("score") if stored.get("key") == key else None

    def put(self, key: dict[str, object], score: dict[str, Any]) -> None:
        """Store a score atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps({"key": key, "score": score}, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, path)
