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
    "tuner.trial_budget",
    "tuner.models.quantize",
    "tuner.defaults",
    "tuner.study.space",
    "tuner.study.priors",
    "tuner.study.range_test",
    "tuner.study.budget",
    "tuner.study.objective",
    "tuner.study.recommend",
    "tuner.study.reference",
    "tuner.study.confirm",
    "tuner.study.options",
    "tuner.study.reference_arm",
    "tuner.study.report",
    "tuner.study.search",
    "tuner.study.setup",
    "tuner.study.summarise",
    "tuner.study.trials",
    "tuner.training.pissa",
    "advisor.flags",
    "tuner.data.packing",
    "tuner.training.compilation",
    "tuner.paper",
    "tuner.events",
    "tuner.errors",
    "tuner.models.load",
    "tuner.data.prepare",
    "tuner.data.files",
    "tuner.data.sources",
    "tuner.data.formats",
    "tuner.data.render",
    "tuner.data.load",
    "tuner.data.encode",
    "tuner.data.preview",
    "advisor.commands.data",
    "tuner.study.run",
    "tuner.scoring.benchmarks",
    "tuner.scoring.benchmarks.base",
    "tuner.scoring.benchmarks.lm_eval_tasks",
    "tuner.scoring.benchmarks.registry",
    "tuner.scoring.benchmarks.roles",
    "tuner.scoring.benchmarks.scoring",
    "tuner.scoring.benchmarks.budget",
    "tuner.scoring.benchmarks.hellaswag",
    "tuner.scoring.benchmarks.winogrande",
    "tuner.scoring.benchmarks.arc_challenge",
    "tuner.scoring.benchmarks.gsm8k",
    "tuner.scoring.benchmarks.humaneval",
    "tuner.scoring.sandbox",
    "tuner.scoring.sandbox.common",
    "tuner.scoring.sandbox.launcher",
    "tuner.scoring.cache",
    "tuner.scoring.evaluation",
    "advisor.commands.evaluate",
    "tuner.scoring.diversity",
    "tuner.scoring.sampling",
    "advisor.commands.diversity",
    "tuner.memory.estimate",
    "tuner.memory.report",
    "tuner.memory.sizes",
    "tuner.memory.bounds",
    "tuner.training.runtime",
    "tuner.rundir",
    "tuner.records",
    "tuner.fullrun.handover",
    "tuner.study.state",
    "tuner.study.watch",
    "tuner.study.trial_objective",
    "tuner.study.summary",
    "tuner.fullrun.report",
    "tuner.fullrun.train",
    "tuner.fullrun.trainer",
    "tuner.fullrun.checkpoints",
    "tuner.fullrun.scores",
    "tuner.training.trial",
    "tuner.training.attention",
    "tuner.training.loss",
    "tuner.training.fused_lora",
    "tuner.training.fused_elementwise",
    "tuner.data.token_cache",
    "advisor.commands.memory",
    "advisor.presets",
    "advisor.exports",
    "advisor.exports.base",
    "advisor.exports.data",
    "advisor.exports.templates",
    "advisor.exports.peft",
    "advisor.exports.axolotl",
    "advisor.exports.llama_factory",
    "advisor.exports.trl",
    "advisor.exports.torchtune",
    "advisor.exports.litgpt",
    "advisor.commands.export",
    "advisor.app.advice",
    "advisor.app.wording",
    "tuner.memory.probe",
    "tuner.scoring.plot",
    "tuner.spectrum.rank",
    "tuner.spectrum.report",
    "tuner.spectrum.weights",
    "tuner.spectrum.adapter",
    "tuner.spectrum.tuned",
    "advisor.commands.spectrum",
    "tuner.models.limits",
    "advisor.arguments",
    "tuner.faults",
    "tuner.study.retry",
    "tuner.study.loop",
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
CLI_MODULES = ("advisor.cli", "advisor.commands.tune", "advisor.commands.evaluate")


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


@pytest.mark.parametrize("path", sorted((ROOT / "advisor" / "app" / "screens").glob("*.py")), ids=lambda p: p.name)
def test_screens_never_import_cli_modules(path):
    cli = [m for m in imported_modules(path) if m in CLI_MODULES or m.startswith("advisor.commands")]
    assert cli == []
