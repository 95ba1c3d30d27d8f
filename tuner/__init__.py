"""The engine: search space, Optuna study, trial runner, data, models.

Importing this package (or its pure modules) loads neither torch nor textual.
"""
