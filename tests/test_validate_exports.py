"""scripts/validate_exports.py: every shipped preset's export loaded by each tool's own parser, in each tool's own
pinned environment (built once, then kept in ADVISOR_EXPORT_VENVS or ~/.cache/lora-advisor/export-venvs)."""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
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
    data_rows = [f"{script.DATA_BASE}+{fmt}" for fmt in ("messages", "text")]  # conversations; continued pretraining
    qlora_rows = ["math-24gib+qlora"]  # the paper's Llama-2-7B with its base weights in 4-bit NF4
    assert {(row["tool"], row["preset"]) for row in rows} == {
        (tool, preset) for tool in script.TOOLS for preset in [*script.shipped_presets(), *data_rows, *qlora_rows]
    }
    assert all(row["loads"] and not row["mismatches"] for row in rows)
    # Every tool read the quantisation back from what it would load the model with: NF4 for QLoRA, else 16 bits.
    assert all("quantize" in row["checked"] for row in rows)
    # Each tool but PEFT (whose adapter config holds no data settings) read the data rows' dataset config back.
    read = {(row["tool"], row["preset"]): set(row["checked"]) for row in rows if row["preset"] in data_rows}
    assert all("loss" in checked for (tool, _), checked in read.items() if tool != "peft")
    assert all(
        "data_format" in read[tool, preset]
        for tool in ("axolotl", "llama-factory", "torchtune")
        for preset in data_rows
    )
    cpu = [row for row in rows if row["preset"].endswith("-cpu")]
    assert cpu and all(not any("patched" in note for note in row["notes"]) for row in cpu)  # nothing patched on CPU
    assert "| trl | 1.16.0 | math-cpu | yes | yes | - |" in capsys.readouterr().out


def test_the_trl_environment_imports_this_pythons_peft_after_its_own_packages():
    """Run from a venv (as most users do), TRL's environment sees that venv's packages, not the base Python's: it
    imports this Python's peft (TRL's LoRA support needs it), and its own site-packages come first, so its pins win."""
    script = load_script("validate_exports")
    python, _seconds = script.environment(script.TOOLS["trl"], VENVS, fresh=False)
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    probe = (
        "import json, sys, sysconfig, peft, trl; "
        "print(json.dumps([sys.path, sysconfig.get_path('purelib'), peft.__file__, trl.__version__]))"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    path, own, peft_file, trl_version = json.loads(done.stdout.splitlines()[-1])

    assert trl_version == "1.16.0"
    peft_here = importlib.util.find_spec("peft")
    assert peft_here is not None and peft_file == peft_here.origin
    here = [directory for directory in site.getsitepackages() if os.path.isdir(directory)]
    assert here and all(path.index(own) < path.index(directory) for directory in here)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--tools", "unsloth"],
            "unknown tool 'unsloth' (known: peft, axolotl, llama-factory, trl, torchtune, litgpt)",
        ),
        (["--presets", "math-1tb"], "no shipped preset 'math-1tb'"),
        (["--data-formats", "messages,xml"], "unknown data format 'xml' (known: messages, sharegpt, alpaca"),
        (["--qlora", "math-24gib,math-1tb"], "no shipped preset 'math-1tb'"),
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


def test_the_checkers_read_nf4_only_for_double_quantised_nf4_computing_in_the_presets_precision():
    common = load_script("export_checks/common")
    assert common.four_bit("nf4", True, "torch.bfloat16", "bf16") == "nf4"
    assert (
        common.four_bit("fp4", True, "torch.bfloat16", "bf16")
        == "4-bit fp4, double quantisation True, computing in bf16"
    )
    assert common.four_bit("nf4", False, "torch.bfloat16", "bf16") != "nf4"
    assert (
        common.four_bit("nf4", True, "torch.float32", "bf16")
        == "4-bit nf4, double quantisation True, computing in fp32"
    )
    assert common.bnb_quantize(None, "bf16") is None  # no BitsAndBytesConfig: 16 bits
