"""The recommended full run: training for whole epochs, resumable, and its report.

One module each:
    train        the run top to bottom: set up, train, save, score, report
    trainer      transformers' Trainer over the packed rows, its callbacks, the training history
    checkpoints  the newest complete checkpoint to resume from; the settings a resumed run must share
    scores       scoring the base model and the adapter (after each epoch on request)
    report       report.json, report.md and the learning-vs-forgetting picture
    handover     the full run's settings from a study, a preset or the command line
"""
