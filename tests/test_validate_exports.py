"""scripts/validate_exports.py: every shipped preset's export loaded by each tool's own parser, in each tool's own
pinned environment (built once, then kept in ADVISOR_EXPORT_VENVS or ~/.cache/lora-advisor/export-venvs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import load_script

VENVS = Path(os.environ.get("ADVISOR_EXPORT_VENVS", Path.home() / ".cache" / "lora-advisor" / "export-venvs"))
"""The tools' environments, kept between runs (the first run builds them: about 5 minutes)."""


def test_every_tool_loads_every_shipped_preset_and_sets_its_values(tmp_path, capsys):
    script = load_script("validate_exports")
    results = tmp_path / "results.json"
    status = script.main(["--venvs", str(VENVS), "--json", str(results)])
    rows = json.loads(results.read_text(encoding="utf-8"))["rows"]
    assert status == 0, capsys.readouterr().out
    assert {(row["tool"], row["preset"]) for row in rows} == {
        (tool, preset) for tool in script.TOOLS for preset in script.shipped_presets()
    }
    assert all(row["loads"] and not row["mismatches"] for row in rows)
    cpu = [row for row in rows if row["preset"].endswith("-cpu")]
    assert cpu and all(not any("patched" in note for note in row["notes"]) for row in cpu)  # nothing patched on CPU
    assert "| trl | 1.16.0 | math-cpu | yes | yes | - |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--tools", "unsloth"],
            "unknown tool 'unsloth' (known: peft, axolotl, llama-factory, trl, torchtune, litgpt)",
        ),
        (["--presets", "math-1tb"], "no shipped preset 'math-1tb'"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2(argv, message, capsys):
    assert load_script("validate_exports").main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_mismatch_is_shown_with_both_values():
    script = load_script("validate_exports")
    row = {"tool": "trl", "version": "1", "preset": "p", "loads": True, "message": "", "notes": []}
    text = script.table([{**row, "mismatches": {"precision": ["fp32", "bf16"]}}])
    assert "no: precision 'fp32' -> 'bf16'" in text
