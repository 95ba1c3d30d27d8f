"""The trial runner and its kernels: LoRA on the base model, loss, attention, fused ops, compilation."""
