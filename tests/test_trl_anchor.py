"""bench/trl_anchor.py: TRL's packed SFTTrainer, run in TRL's pinned environment (built once, then kept in
ADVISOR_EXPORT_VENVS or ~/.cache/lora-advisor/export-venvs), trains the tiny model and counts what it trained."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

VENVS = Path(os.environ.get("ADVISOR_EXPORT_VENVS", Path.home() / ".cache" / "lora-advisor" / "export-venvs"))
"""The tools' environments, kept between runs (the first run builds them: minutes)."""


def load_anchor() -> ModuleType:
    """bench/trl_anchor.py imported by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("trl_anchor", REPO / "bench" / "trl_anchor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["trl_anchor"] = module
    spec.loader.exec_module(module)
    return module


def test_trl_packed_run_counts_real_tokens_and_time(tiny_model):
    from tuner.errors import AdvisorError
    from tuner.settings import LoraSettings

    anchor = load_anchor()
    try:
        python = anchor.trl_python(VENVS)
    except AdvisorError as error:  # offline with no environment built yet
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    rng = random.Random(0)
    examples = []
    for _ in range(12):
        prompt, completion = rng.randint(5, 30), rng.randint(5, 30)
        ids = [rng.randrange(3, 500) for _ in range(prompt + completion)]
        examples.append([ids, [-100] * prompt + ids[prompt:]])
    lora = LoraSettings(rank=16, alpha=32, targets="all")
    spec = {
        "model_dir": str(tiny_model),
        "examples": examples,
        "batch_size": 2,
        "seq_len": 64,
        "steps": 2,
        "warmup_steps": 1,
        "learning_rate": 2e-4,
        "warmup_ratio": 0.1,
        "max_grad_norm": 1.0,
        "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": lora.dropout, "target_modules": lora.target_modules()},
        "threads": 2,
    }

    measured = anchor.measure_trl(python, spec)

    assert measured["trl_version"] == "1.16.0"
    assert measured["seconds"] > 0
    assert 0 < measured["tokens"] <= measured["batch_tokens"]
    assert measured["tokens"] <= 2 * 2 * 64  # two steps of two rows of at most 64 tokens
    total = sum(len(ids) for ids, _ in examples)
    assert measured["packed_rows"] >= -(-total // 64)  # whole examples binned into rows of at most 64 tokens
