"""Generation diversity on hand-made samples: pass@k against its closed form, what counts as a distinct solution."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from tuner.scoring.diversity import (
    DiversityResult,
    ProblemSamples,
    Sample,
    SamplingSettings,
    distinct_count,
    normalise_answer,
    normalise_code,
    normalise_math,
    pass_at_ks,
)


def closed_form(n: int, c: int, k: int) -> float:
    return 1 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_pass_at_k_is_the_closed_form_averaged_over_problems(k):
    result = DiversityResult("humaneval", 5, 0.8, problems=(3, 7, 9), correct=(0, 2, 5), distinct=(1, 3, 5))
    per_problem = [closed_form(5, c, k) for c in (0, 2, 5)]
    estimate = result.pass_at(k)
    assert estimate.mean == pytest.approx(statistics.fmean(per_problem))
    assert estimate.stderr == pytest.approx(statistics.stdev(per_problem) / math.sqrt(3))


def test_pass_at_2_of_one_correct_in_four_is_a_half():
    result = DiversityResult("gsm8k", 4, 1.0, problems=(0, 1), correct=(1, 1), distinct=(4, 4), distinct_answers=(2, 3))
    assert result.pass_at(1).mean == pytest.approx(0.25)
    assert result.pass_at(2).mean == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert result.pass_at(4).mean == pytest.approx(1.0)
    assert result.pass_at(2).stderr == pytest.approx(0.0)
    assert result.mean_distinct_answers().mean == pytest.approx(2.5)  # type: ignore[union-attr]


def test_one_problem_has_no_standard_error():
    result = DiversityResult("gsm8k", 2, 1.0, problems=(0,), correct=(1,), distinct=(2,))
    assert result.pass_at(1).mean == pytest.approx(0.5) and result.pass_at(1).stderr is None


@pytest.mark.parametrize(
    ("samples", "ks"), [(1, (1,)), (2, (1, 2)), (3, (1, 2, 3)), (8, (1, 2, 4, 8)), (10, (1, 2, 4, 8, 10))]
)
def test_reported_ks_are_powers_of_two_and_k_itself(samples, ks):
    assert pass_at_ks(samples) == ks


FUNCTION = '''def add(a, b):
    """Add two numbers."""
    return a + b
'''
REFORMATTED = """def add( a,b ):
    # the sum
    return (a+b)   # done
"""
OTHER_DOCSTRING = """def add(a, b):
    '''Sum of a and b.'''

    return a + b
"""
DIFFERENT_LOGIC = """def add(a, b):
    return sum([a, b])
"""


def test_code_differing_in_formatting_comments_or_docstrings_is_one_solution():
    assert distinct_count([FUNCTION, REFORMATTED, OTHER_DOCSTRING], normalise_code) == 1
    assert distinct_count([FUNCTION, REFORMATTED, DIFFERENT_LOGIC], normalise_code) == 2


def test_function_bodies_completed_after_the_prompt_are_compared_as_code():
    bodies = ["    return a + b\n", "    # add\n    return (a  +  b)\n", "    result = a + b\n    return result\n"]
    assert distinct_count(bodies, normalise_code) == 2


def test_code_that_does_not_parse_is_compared_without_its_whitespace():
    assert normalise_code("def f(:\n    return  1") == "def f(: return 1"
    assert distinct_count(["def f(:\n  x", "def f(:   x", "def g(: x"], normalise_code) == 2


def test_math_solutions_differ_beyond_whitespace_and_case_and_answers_as_exact_match_reads_them():
    assert normalise_math("She sells 9 eggs.\n#### 18") == normalise_math("she  sells 9 EGGS. #### 18")
    assert distinct_count(["9 * 2 = 18", "2 * 9 = 18"], normalise_math) == 2
    assert distinct_count(["$1,000.", "1000", "1,000"], normalise_answer) == 1


def test_counts_from_samples():
    drawn = [
        ProblemSamples(4, (Sample("9 * 2 = 18", True, "18"), Sample("9*2 = 18", True, "18"), Sample("x", False, "3"))),
        ProblemSamples(8, (Sample("a", False, "1"), Sample("A", False, "$1."), Sample("b", False, "2"))),
    ]
    result = DiversityResult.from_samples("gsm8k", 0.8, drawn)
    assert result.problems == (4, 8) and result.correct == (2, 0)
    assert result.distinct == (3, 2) and result.distinct_answers == (2, 2)
    assert result.mean_distinct().mean == pytest.approx(2.5) and result.mean_distinct().stderr == pytest.approx(0.5)


def test_code_results_have_no_final_answers():
    drawn = [ProblemSamples(0, (Sample(FUNCTION, True), Sample(REFORMATTED, True)))]
    result = DiversityResult.from_samples("humaneval", 0.8, drawn)
    assert result.distinct == (1,) and result.distinct_answers is None and result.mean_distinct_answers() is None


def test_json_round_trip_and_version():
    result = DiversityResult("gsm8k", 3, 1.0, problems=(0, 5), correct=(0, 3), distinct=(3, 1), distinct_answers=(2, 1))
    payload = json.loads(json.dumps(result.to_json()))
    assert DiversityResult.from_json(payload) == result
    assert payload["pass_at_k"]["pass@3"]["mean"] == pytest.approx(0.5)
    assert set(payload["pass_at_k"]) == {"pass@1", "pass@2", "pass@3"}
    with pytest.raises(ValueError, match="version 0"):
        DiversityResult.from_json({**payload, "version": 0})


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"correct": (4, 0)}, "correct must be between 0 and 3"),
        ({"distinct": (0, 1)}, "distinct must be between 1 and 3"),
        ({"distinct": (1,)}, "distinct has 1 entries for 2 problems"),
    ],
)
def test_counts_outside_what_k_samples_allow_are_refused(counts, message):
    fields = {"problems": (0, 1), "correct": (0, 0), "distinct": (1, 1), **counts}
    with pytest.raises(ValueError, match=message):
        DiversityResult("gsm8k", 3, 1.0, **fields)


def test_sampling_settings():
    assert SamplingSettings(1, 0.0).greedy
    with pytest.raises(ValueError, match="at least 1, got 0"):
        SamplingSettings(0)
    with pytest.raises(ValueError, match="greedy decoding, whose 3 draws would all be the same"):
        SamplingSettings(3, 0.0)
    with pytest.raises(ValueError, match="0 \\(greedy\\) or more, got -1"):
        SamplingSettings(1, -1.0)
