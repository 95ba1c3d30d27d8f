"""An lm-eval model that answers from a script (hand-made outputs with known scores), and the check it runs on
a multiple-choice benchmark. Importing this skips the importing test module where lm-eval is not installed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.model import LM

from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings, subset_indices
from tuner.scoring.evaluation import score_task

GoldIndex = Callable[[dict[str, Any]], int]
"""The index of a multiple-choice document's right answer, in the benchmark's own layout."""


class ScriptedLM(LM):
    """An lm-eval model that answers from a script: hand-made outputs with known scores."""

    def __init__(self, choose: Any = None, answer: Any = None) -> None:
        super().__init__()
        self.choose, self.answer, self.calls = choose, answer, 0

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self.calls += len(requests)
        return [(0.0 if self.choose(r.doc) == r.idx else -10.0, False) for r in requests]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        self.calls += len(requests)
        return [self.answer(r.doc) for r in requests]

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in chat_history) + "<assistant>"

    @property
    def tokenizer_name(self) -> str:
        return "scripted"


def check_scores_follow_the_likelihoods(task: str, docs: Sequence[Any], gold_index: GoldIndex, data_dir: Path) -> None:
    """A model that always likes the right answer scores 1; one that always likes the first, the share it gets right."""
    settings = EvalSettings(tasks=(task,), limit=12, seed=3)
    always_right = score_task(ScriptedLM(choose=gold_index), task, settings, data_dir)
    assert always_right.score == 1.0 and always_right.items == 12
    always_first = score_task(ScriptedLM(choose=lambda doc: 0), task, settings, data_dir)
    chosen = [docs[i] for i in subset_indices(BENCHMARKS[task], 12, 3)]
    expected = sum(gold_index(doc) == 0 for doc in chosen) / 12
    assert always_first.metrics["acc"] == pytest.approx(expected)
