"""What every tool's checker shares (runs inside the tool's own virtual environment: imports nothing of ours).

A checker is `python scripts/export_checks/check_TOOL.py JOBS.json` (check_: a file named like the tool
would shadow its package). JOBS.json is a list of jobs, one per exported preset:
{"preset": name, "dir": the export directory, "file": the tool's file in it, "expected": base.expected_settings()}.
The checker loads each file through the tool's own parser, reads the values back from the objects the tool built
(never from the raw YAML) and prints one JSON line per job: {"preset", "loads", "message", "mismatches", "notes",
"checked"} (checked: the names of the values compared). A job whose preset knows its data format also holds
"example", one record of that format, and expects "data_format" and "loss" ('responses' or 'all') back where the tool
can say them; for the columns format, "columns" (the prompt and response column names) too where the tool names them.
Every job expects "quantize": 'nf4' for a QLoRA preset (4-bit NF4, double quantised, computing in the preset's
precision), None for a 16-bit one; each checker reads it back from the quantisation the tool would build.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Callable
from typing import Any

Check = Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]]
"""Loads one job's file with the tool's parser; returns the values it read (named as in `expected`) and notes."""


def same(expected: Any, got: Any) -> bool:
    """Equal, with floats compared to a relative 1e-9 and lists as sets of names."""
    if isinstance(expected, float) or isinstance(got, float):
        try:
            return math.isclose(float(expected), float(got), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, list) and isinstance(got, list | tuple | set):
        return sorted(map(str, expected)) == sorted(map(str, got))
    return expected == got


def mismatches(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, list[Any]]:
    """Each value the tool read that differs from the preset's: name -> [expected, got]."""
    return {name: [expected[name], value] for name, value in got.items() if not same(expected.get(name), value)}


def one_value(**found: set[Any]) -> dict[str, Any]:
    """The one value of each setting across a model's LoRA layers (rank, alpha...); RuntimeError where they differ."""
    if any(len(values) != 1 for values in found.values()):
        raise RuntimeError("LoRA layers differ: " + ", ".join(f"{name} {sorted(v)}" for name, v in found.items()))
    return {name: next(iter(values)) for name, values in found.items()}


def data_format(job: dict[str, Any]) -> str | None:
    """The data format the job's preset knows (None: none, as the shipped presets)."""
    return job["expected"].get("data_format")


def loss_of(masked: list[bool]) -> str:
    """'all' where no token of an example is kept from the loss, 'responses' where some are (the prompt's)."""
    return "responses" if any(masked) else "all"


DTYPES = {"torch.bfloat16": "bf16", "torch.float32": "fp32", "torch.float16": "fp16"}
"""torch dtypes by their str(), as the presets' precision names them (this module imports no torch)."""


def four_bit(kind: Any, double: Any, compute: Any, precision: str) -> str:
    """'nf4' for 4-bit NF4 with double quantisation computing in `precision` (QLoRA as a preset means it), else what
    the tool built, in words (which then differs from the preset's 'nf4')."""
    computes = DTYPES.get(str(compute), str(compute))
    if (str(kind), bool(double), computes) == ("nf4", True, precision):
        return "nf4"
    return f"4-bit {kind}, double quantisation {bool(double)}, computing in {computes}"


def bnb_quantize(config: Any, precision: str) -> str | None:
    """The quantisation a transformers BitsAndBytesConfig asks for (see four_bit); None for no config: 16 bits."""
    if config is None or not (config.load_in_4bit or config.load_in_8bit):
        return None
    if not config.load_in_4bit:
        return "8-bit"
    return four_bit(
        config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant, config.bnb_4bit_compute_dtype, precision
    )


def first_line(error: BaseException) -> str:
    """An error as one line: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def run(check: Check) -> None:
    """Run `check` on every job of the JOBS.json named on the command line; one JSON line per job on stdout."""
    jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
    for job in jobs:
        result: dict[str, Any] = {"preset": job["preset"], "loads": False, "message": "", "mismatches": {}, "notes": []}
        try:
            got, notes = check(job)
        except BaseException as error:  # the tool's refusal, of whatever type (SystemExit too), is the finding
            if isinstance(error, KeyboardInterrupt):
                raise
            result["message"] = first_line(error)
            result["trace"] = traceback.format_exc(limit=3)[-1500:]
        else:
            result["loads"] = True
            result["mismatches"] = mismatches(job["expected"], got)
            result["notes"] = notes
            result["checked"] = sorted(got)
        print(json.dumps(result), flush=True)
