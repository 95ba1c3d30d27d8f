"""The study: set-up, search space, priors, range test, budget, pruning, confirm sets, recommendation."""
