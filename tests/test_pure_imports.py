"""The headless core imports without torch, transformers, peft, lm_eval or textual (checked in a fresh interpreter)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "peft", "lm_eval", "textual", "datasets")
PURE = (
    "tuner.settings",
    "tuner.space",
    "tuner.priors",
    "tuner.range_test",
    "tuner.study_budget",
    "tuner.objective",
    "tuner.recommend",
    "tuner.reference",
    "tuner.confirm",
    "tuner.packing",
    "tuner.compilation",
    "tuner.paper",
    "tuner.events",
    "tuner.errors",
    "tuner.models",
    "tuner.data",
    "tuner.data_files",
    "tuner.data_sources",
    "tuner.study",
    "tuner.benchmarks",
    "tuner.benchmarks.base",
    "tuner.benchmarks.lm_eval_tasks",
    "tuner.benchmarks.registry",
    "tuner.benchmarks.roles",
    "tuner.benchmarks.scoring",
    "tuner.benchmarks.budget",
    "tuner.benchmarks.hellaswag",
    "tuner.benchmarks.winogrande",
    "tuner.benchmarks.arc_challenge",
    "tuner.benchmarks.gsm8k",
    "tuner.benchmarks.humaneval",
    "tuner.sandbox",
    "tuner.sandbox.common",
    "tuner.sandbox.launcher",
    "tuner.score_cache",
    "tuner.evaluation",
    "advisor.evaluate",
    "tuner.diversity",
    "tuner.sampling",
    "advisor.diversity_command",
    "tuner.memory",
    "tuner.memory_bounds",
    "tuner.runtime",
    "tuner.rundir",
    "tuner.records",
    "tuner.handover",
    "tuner.study_state",
    "tuner.study_watch",
    "tuner.study_objective",
    "tuner.study_summary",
    "tuner.train_report",
    "tuner.train",
    "tuner.trial",
    "tuner.attention",
    "tuner.loss",
    "tuner.fused_lora",
    "tuner.fused_elementwise",
    "tuner.token_cache",
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
    "tuner.spectrum",
    "advisor.spectrum_command",
    "tuner.model_limits",
    "advisor.arguments",
    "tuner.faults",
    "tuner.study_retry",
    "tuner.study_loop",
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


ROOT = Path(__file__).resolve().parents[1]
CLI_MODULES = ("advisor.cli", "advisor.tune", "advisor.evaluate")


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "tuner").rglob("*.py")), ids=lambda p: p.name)
def test_the_engine_never_imports_the_advisor_package(path):
    assert not [m for m in imported_modules(path) if m == "advisor" or m.startswith("advisor.")]


@pytest.mark.parametrize("path", sorted((ROOT / "advisor" / "screens").glob("*.py")), ids=lambda p: p.name)
def test_screens_never_import_cli_modules(path):
    cli = [m for m in imported_modules(path) if m in CLI_MODULES or m.endswith("_command")]
    assert cli == []
