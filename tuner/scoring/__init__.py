"""Scoring: the benchmarks, lm-eval evaluation, sampling, the code sandbox, the learning-vs-forgetting plot."""
