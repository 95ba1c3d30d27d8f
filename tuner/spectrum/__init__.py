"""The spectrum of a fine-tuning's weight change, as in Biderman et al. 2024."""
