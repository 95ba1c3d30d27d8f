"""The JSON round trip the typed records share (pure): their version, and reading a payload's known fields."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

RECORD_VERSION = 1
"""Bumped when a record's meaning changes; readers convert older versions."""

_Record = TypeVar("_Record")


def read_fields(cls: type[_Record], payload: dict[str, Any], what: str) -> dict[str, Any]:
    """The payload's known fields; ValueError for a version newer than this code writes."""
    if not isinstance(payload, dict):
        raise ValueError(f"a {what} is a JSON object, got {type(payload).__name__}")
    version = payload.get("version", RECORD_VERSION)
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise ValueError(f"{what} version {version!r} is newer than this advisor reads ({RECORD_VERSION})")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return {key: value for key, value in payload.items() if key in known}


def without(payload: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    """The payload without the optional keys that are None (files leave them out)."""
    return {key: value for key, value in payload.items() if not (key in optional and value is None)}


def without_none(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without any key whose value is None (records whose files hold only what was measured)."""
    return {key: value for key, value in payload.items() if value is not None}
