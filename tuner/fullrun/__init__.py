"""The recommended full run: training for whole epochs, resumable, and its report."""
