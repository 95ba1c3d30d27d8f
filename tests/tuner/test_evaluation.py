"""The benchmarks: mirror readers, scorers on hand-made outputs with known answers, the base-score cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuner.benchmarks import (
    BENCHMARKS,
    FORGETTING_TASKS,
    EvalSettings,
    forgetting_score,
    item_count,
    parse_tasks,
    subset_indices,
)
from tuner.data import HELLASWAG_RESERVED_FROM
from tuner.score_cache import ScoreCache

# -- pure: subsets, settings, cache ------------------------------------------------------------


def test_subsets_are_seeded_samples_from_the_pool_and_none_means_every_item():
    hellaswag = BENCHMARKS["hellaswag"]
    first = subset_indices(hellaswag, 50, seed=0)
    assert first == subset_indices(hellaswag, 50, seed=0) != subset_indices(hellaswag, 50, seed=1)
    assert len(first) == 50 and first == sorted(set(first))
    assert max(first) < HELLASWAG_RESERVED_FROM  # the study's general text is never scored
    assert subset_indices(hellaswag, None, 0) is None and subset_indices(hellaswag, 10042, 0) is None
    assert item_count(BENCHMARKS["humaneval"], 500) == 164 and item_count(hellaswag, 50) == 50


def test_settings_refuse_humaneval_without_permission_and_bad_values():
    with pytest.raises(ValueError, match="--allow-code-execution"):
        EvalSettings(tasks=("gsm8k", "humaneval"))
    with pytest.raises(ValueError, match="unknown benchmark mmlu"):
        EvalSettings(tasks=("mmlu",))
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        EvalSettings(limit=0)
    with pytest.raises(ValueError, match="unknown benchmark nope"):
        parse_tasks("gsm8k,nope")
    assert parse_tasks(" gsm8k, hellaswag,gsm8k ") == ("gsm8k", "hellaswag")


def test_cache_keys_name_the_prompt_format_only_where_it_matters():
    chat, plain = EvalSettings(limit=8), EvalSettings(limit=8, prompt_format="plain")
    assert chat.cache_key("hellaswag", "m", "mirror") == plain.cache_key("hellaswag", "m", "mirror")
    assert chat.cache_key("gsm8k", "m", "mirror") != plain.cache_key("gsm8k", "m", "mirror")
    assert chat.cache_key("gsm8k", "m", "mirror") != chat.cache_key("gsm8k", "m", "hub")
    assert chat.cache_key("gsm8k", "m", "mirror") != EvalSettings(limit=9).cache_key("gsm8k", "m", "mirror")


def test_forgetting_is_the_mean_of_the_three_general_benchmarks():
    assert forgetting_score({"hellaswag": 0.4, "winogrande": 0.5, "arc_challenge": 0.3}) == pytest.approx(0.4)
    assert forgetting_score({"hellaswag": 0.4, "winogrande": 0.5}) is None


def test_score_cache_round_trip_and_damage(tmp_path: Path):
    cache = ScoreCache(tmp_path)
    key = EvalSettings(limit=4).cache_key("winogrande", "model-a", "mirror")
    assert cache.get(key) is None
    cache.put(key, {"score": 0.5, "metrics": {"acc": 0.5}, "items": 4, "seconds": 1.0})
    assert cache.get(key)["score"] == 0.5
    assert cache.get({**key, "model": "model-b"}) is None
    for stored in tmp_path.iterdir():
        stored.write_text("{not json")
    assert cache.get(key) is None


# -- the mirror's files as lm-eval tasks -------------------------------------------------------

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.model import LM  # noqa: E402

from tuner import lm_tasks  # noqa: E402
from tuner.evaluation import score_task  # noqa: E402


def test_mirror_readers_give_lm_eval_layouts(data_dir: Path):
    hellaswag = lm_tasks.hellaswag_docs(data_dir)["validation"]
    assert len(hellaswag) == 10042
    first = hellaswag[0]
    assert first["query"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert first["label"] == 3 and first["choices"][3] == "starts pulling up roofing on a roof."
    arc = lm_tasks.arc_docs(data_dir)["test"]
    assert len(arc) == 1172
    numeric = next(doc for doc in arc if doc["answerKey"] == "1")
    assert numeric["choices"]["label"][:2] == ["1", "2"]
    assert len(lm_tasks.winogrande_docs(data_dir)["validation"]) == 1267
    gsm8k = lm_tasks.gsm8k_docs(data_dir)
    assert (len(gsm8k["train"]), len(gsm8k["test"])) == (7473, 1319)
    assert len(lm_tasks.humaneval_docs()["test"]) == 164


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


def _gold_index(doc: dict[str, Any]) -> int:
    if "label" in doc:  # hellaswag
        return int(doc["label"])
    if "answerKey" in doc:  # arc
        return doc["choices"]["label"].index(doc["answerKey"])
    return int(doc["answer"]) - 1  # winogrande


@pytest.mark.parametrize("task", FORGETTING_TASKS)
def test_multiple_choice_scores_follow_the_likelihoods(task: str, data_dir: Path):
    settings = EvalSettings(tasks=(task,), limit=12, seed=3)
    always_right = score_task(ScriptedLM(choose=_gold_index), task, settings, data_dir)
    assert always_right.score == 1.0 and always_right.items == 12
    always_first = score_task(ScriptedLM(choose=lambda doc: 0), task, settings, data_dir)
    docs = {
        "hellaswag": lambda: lm_tasks.hellaswag_docs(data_dir)["validation"],
        "winogrande": lambda: lm_tasks.winogrande_docs(data_dir)["validation"],
        "arc_challenge": lambda: lm_tasks.arc_docs(data_dir)["test"],
    }[task]()
    chosen = [docs[i] for i in subset_indices(BENCHMARKS[task], 12, 3)]
    expected = sum(_gold_index(doc) == 0 for doc in chosen) / 12
    assert always_first.metrics["acc"] == pytest.approx(expected)


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_gsm8k_strict_and_flexible_extraction(prompt_format: str, data_dir: Path):
    settings = EvalSettings(tasks=("gsm8k",), limit=3, seed=0, prompt_format=prompt_format)
    test = lm_tasks.gsm8k_docs(data_dir)["test"]
    docs = [test[i] for i in subset_indices(BENCHMARKS["gsm8k"], 3, 0)]
    finals = [doc["answer"].split("#### ")[-1] for doc in docs]
    outputs = {
        docs[0]["question"]: f"Adding up gives {finals[0]}.\n#### {finals[0]}",  # both extractions right
        docs[1]["question"]: f"So the answer is {finals[1]}.",  # only the last number: flexible right
        docs[2]["question"]: "#### 123456789",  # wrong
    }
    result = score_task(ScriptedLM(answer=lambda doc: outputs[doc["question"]]), "gsm8k", settings, data_dir)
    assert result.metrics["exact_match,strict-match"] == pytest.approx(1 / 3)
    assert result.metrics["exact_match,flexible-extract"] == pytest.approx(2 / 3)
    assert result.score == pytest.approx(2 / 3)


def test_humaneval_pass_at_1_runs_completions_in_the_sandbox(data_dir: Path):
    settings = EvalSettings(tasks=("humaneval",), limit=4, seed=0, prompt_format="plain", allow_code_execution=True)
    problems = lm_tasks.humaneval_docs()["test"]
    chosen = [problems[i] for i in subset_indices(BENCHMARKS["humaneval"], 4, 0)]
    right = {p["task_id"] for p in chosen[:2]}

    def answer(doc: dict[str, Any]) -> str:
        if doc["task_id"] in right:
            return doc["canonical_solution"]
        return "    while True:\n        pass\n"  # never ends: the sandbox's time limit scores it failed

    result = score_task(ScriptedLM(answer=answer), "humaneval", settings, data_dir)
    assert result.score == pytest.approx(0.5)


def test_humaneval_chat_answers_define_the_function_again(data_dir: Path):
    settings = EvalSettings(tasks=("humaneval",), limit=2, seed=1, allow_code_execution=True)
    problems = lm_tasks.humaneval_docs()["test"]
    chosen = [problems[i] for i in subset_indices(BENCHMARKS["humaneval"], 2, 1)]

    def answer(doc: dict[str, Any]) -> str:
        header = doc["prompt"][doc["prompt"].index(f"def {doc['entry_point']}") :]
        body = doc["canonical_solution"] if doc["task_id"] == chosen[0]["task_id"] else "    return None\n"
        return header + body

    result = score_task(ScriptedLM(answer=answer), "humaneval", settings, data_dir)
    assert result.score == pytest.approx(0.5)


def _samples_file(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_samples_made_elsewhere_score_pass_at_k(tmp_path: Path):
    problems = lm_tasks.humaneval_docs()["test"]
    good, other = problems[2], problems[7]
    rows = [
        {"task_id": good["task_id"], "completion": good["canonical_solution"]},
        {"task_id": good["task_id"], "completion": "    return 0.5\n"},
        {"task_id": other["task_id"], "completion": other["canonical_solution"]},
        {"task_id": other["task_id"], "completion": other["canonical_solution"]},
    ]
    result = lm_tasks.score_samples(_samples_file(tmp_path / "s.jsonl", rows))
    assert (result["samples"], result["problems"]) == (4, 2)
    assert result["pass@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert "pass@10" not in result  # two samples per problem: pass@k only up to k = 2
    assert result["tasks"][good["task_id"]] == {"samples": 2, "passed": 1}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["{not json"], "line 1: not a JSON object"),
        ([{"task_id": "HumanEval/0"}, {"task_id": "HumanEval/0", "completion": 3}], "line 1: expected an object"),
        ([{"task_id": "HumanEval/999", "completion": ""}], "unknown HumanEval task_id 'HumanEval/999'"),
        ([], "holds no samples"),
    ],
)
def test_bad_sample_files_are_named_with_their_line(tmp_path: Path, rows: list[object], message: str):
    from tuner.errors import AdvisorError

    with pytest.raises(AdvisorError, match=message):
        lm_tasks.score_samples(_samples_file(tmp_path / "bad.jsonl", rows))
    with pytest.raises(AdvisorError, match="samples file not found"):
        lm_tasks.score_samples(tmp_path / "missing.jsonl")


def test_a_missing_mirror_file_is_named(tmp_path: Path):
    from tuner.errors import AdvisorError

    with pytest.raises(AdvisorError, match=r"benchmark file not found: .*winogrande/dev.jsonl"):
        score_task(ScriptedLM(choose=_gold_index), "winogrande", EvalSettings(tasks=("winogrande",)), tmp_path)


def test_without_a_mirror_the_hub_is_tried_and_its_failure_named():
    from tuner.errors import AdvisorError

    settings = EvalSettings(tasks=("arc_challenge",), limit=2)
    with pytest.raises(
        AdvisorError, match=r"cannot load benchmark arc_challenge from the Hugging Face hub.*--data-dir"
    ):
        score_task(ScriptedLM(choose=_gold_index), "arc_challenge", settings, None)
