"""Training memory: the estimate from a model's config, the budget's bounds, and the measured probe."""
