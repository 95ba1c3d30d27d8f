"""Training memory: the estimate from a model's config, what fits a budget, the budget's bounds, and the measured probe.

One module each:
    estimate   the peak of one training step, by part, from the model's shape and the setup
    report     what fits a budget, the estimate's report and its text
    sizes      memory sizes as a person writes and reads them ('24GiB')
    bounds     the search space narrowed to a budget; the full run's refusal under one
    probe      a step's peak measured (bench/memory_estimate.py sets it beside the estimate)
"""
