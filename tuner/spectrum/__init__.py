"""The spectrum of a fine-tuning's weight change ΔW, as in Biderman et al. 2024.

For every attention (q, k, v, o) and MLP (gate, up, down) projection of the decoder layers: the rank needed to
explain 90 % of ΔW's variance (the smallest k whose k largest squared singular values hold 90 % of their sum).
ΔW comes from a PEFT adapter (scaling x B @ A) or from a tuned model's weights minus the base model's. The paper
found full fine-tuning's ΔW needs 10-100x the rank of a typical LoRA, MLP modules more than attention, and the
first and last layers less than the middle ones.

    rank       the rank for a share of the variance, one matrix's spectrum record
    report     the report of every matrix, the paper's findings checked on it, spectrum.json and spectrum.png
    weights    reading weights one at a time (safetensors files, a state dict, the base model)
    adapter    ΔW of a PEFT adapter and its spectrum
    tuned      ΔW of a tuned model and its spectrum

Pure at import: torch, safetensors, transformers and matplotlib are imported inside the functions that use them.
"""
