"""Memory sizes as a person writes and reads them: '24GiB' parsed, bytes shown as GiB, MiB or KiB (pure)."""

from __future__ import annotations

import re

GIB = 1 << 30
MAX_MEMORY_BUDGET = 100 << 40  # 100 TiB: past any one machine's memory, so a slip of the unit is refused
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from '24GiB', '24G', '1.5 TiB' or '512MB' (binary units throughout); ValueError otherwise."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a memory size: {text!r} (try 24GiB)")
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"a memory budget must be positive, got {text!r}")
    if value > MAX_MEMORY_BUDGET:
        raise ValueError(f"a memory budget of {text.strip()} is above {MAX_MEMORY_BUDGET >> 40} TiB: no machine has it")
    return int(value)


def machine_memory() -> int | None:
    """The bytes of RAM this machine has (None where the system does not say): a CPU trial's ceiling."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def format_size(value: float) -> str:
    """Bytes as GiB (two decimals), MiB or KiB."""
    if value >= GIB / 10:
        return f"{value / GIB:.2f} GiB"
    return f"{value / (1 << 20):.0f} MiB" if value >= 1 << 20 else f"{value / (1 << 10):.0f} KiB"
