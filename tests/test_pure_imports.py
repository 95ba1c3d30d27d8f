"""The headless core imports without torch, transformers, peft, lm_eval or textual (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "peft", "lm_eval", "textual", "datasets")
PURE = (
    "tuner.settings",
    "tuner.space",
    "tuner.objective",
    "tuner.recommend",
    "tuner.packing",
    "tuner.paper",
    "tuner.events",
    "tuner.errors",
    "tuner.models",
    "tuner.data",
    "tuner.study",
    "tuner.benchmarks",
    "tuner.score_cache",
    "tuner.lm_tasks",
    "tuner.evaluation",
    "advisor.evaluate",
    "advisor.memory",
    "advisor.memory_command",
    "advisor.presets",
    "advisor.exports",
    "advisor.exports.base",
    "advisor.exports.peft",
    "advisor.exports.axolotl",
    "advisor.exports.llama_factory",
    "advisor.exports.trl",
    "advisor.exports.torchtune",
    "advisor.exports.litgpt",
    "advisor.export_command",
    "advisor.advice",
    "tuner.memory_probe",
    "tuner.plot",
)


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('LOADED', *(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[-1].split()[1:]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_heavy_library(module):
    assert loaded_after(f"import {module}") == []


def test_advisor_help_imports_neither_torch_nor_textual():
    code = (
        "from advisor.cli import main\n"
        "for argv in (['--help'], ['tune', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass"
    )
    assert loaded_after(code) == []
