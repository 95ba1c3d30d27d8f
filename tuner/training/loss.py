"""The loss at labelled positions only, with the vocabulary projection in chunks.

A causal LM's loss needs logits only where a position predicts a label: a prompt's positions need none (about
half of GSM8K's tokens). Where they are needed, they are made a chunk of rows at a time and turned into the loss
and its gradient at once (a fused linear cross-entropy), so the labelled tokens x vocabulary logits never exist
whole and no softmax is kept for the backward pass. Models whose logits are more than the output embedding of the
decoder's last hidden state (scaled or soft-capped) keep their own loss.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from tuner.data.packing import IGNORE_INDEX
from tuner.training.attention import packed_attention

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

LOGIT_CHUNK_BYTES = 128 * 2**20  # the memory estimate counts one chunk (tuner.memory.estimate repeats this)
"""Float32 logits made at once: 682 rows of a 49,152-token vocabulary (SmolLM2's), 261 of a 128,256-token one
(Llama 3's). Not less: a short chunk leaves the vocabulary projection's matmul starved of rows."""


def chunk_rows(vocabulary: int, chunk_bytes: int = LOGIT_CHUNK_BYTES) -> int:
    """Rows of float32 logits per chunk."""
    return max(1, chunk_bytes // (4 * vocabulary))


def plain_output_head(model: PreTrainedModel) -> torch.nn.Module | None:
    """The output embedding, where the model's logits are just that of its decoder's last hidden state (no logit
    scaling or soft-capping in its config); None otherwise."""
    config = model.config
    if any(getattr(config, key, None) for key in ("final_logit_softcapping", "logit_scale", "output_multiplier")):
        return None
    try:
        head, decoder = model.get_output_embeddings(), model.get_decoder()
    except (AttributeError, NotImplementedError):
        return None
    return head if head is not None and decoder is not None and decoder is not model else None


def _linear_weight(head: torch.nn.Module) -> torch.Tensor | None:
    """The weight of a plain bias-free linear head (what the fused loss needs); None for anything else (an adapter
    on the head, a bias)."""
    import torch

    if type(head) is torch.nn.Linear and head.bias is None:
        return head.weight
    return None


def training_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean loss per label token of a packed batch (input_ids, labels, position_ids), equal to the model's own loss,
    with attention by example (tuner.training.attention) and logits only at labelled positions, in chunks."""
    import torch

    _, counted = _label_positions(batch)
    with packed_attention(model):
        head = plain_output_head(model)
        if head is None:
            return model(**batch, use_cache=False).loss
        hidden, targets = _labelled_states(model, batch, counted)
    weight = _linear_weight(head)
    if weight is not None and torch.is_grad_enabled():
        return linear_cross_entropy(hidden, weight, targets)
    return _chunked_losses(head, hidden, targets).mean()  # measuring: the full run's held-out losses


def token_losses(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss at each position that predicts a label, [rows, length - 1], zero elsewhere; for measuring (no
    gradients), with attention by example and logits in chunks where the head allows."""
    import torch

    shifted, counted = _label_positions(batch)
    with packed_attention(model):
        head = plain_output_head(model)
        if head is None:
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
            return torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="none"
            )
        hidden, targets = _labelled_states(model, batch, counted)
    losses = torch.zeros(shifted.shape, dtype=torch.float32, device=shifted.device)
    losses[counted] = _chunked_losses(head, hidden, targets)
    return losses


def _label_positions(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The label each position predicts, [rows, length - 1], and where there is one."""
    shifted = batch["labels"][:, 1:]
    return shifted, shifted != IGNORE_INDEX


def _labelled_states(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], counted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's last hidden states at the positions that predict a label, [n, hidden], and those labels."""
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    hidden = model.get_decoder()(**inputs).last_hidden_state[:, :-1][counted]
    return hidden, batch["labels"][:, 1:][counted]


def _chunked_losses(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss at each of `hidden`'s rows, [n], the head's logits made a chunk of rows at a time where it is a plain
    linear layer (whole otherwise)."""
    import torch

    weight = _linear_weight(head)
    step = chunk_rows(weight.shape[0]) if weight is not None else max(1, len(targets))
    picked = [
        torch.nn.functional.cross_entropy(
            head(hidden[start : start + step]).float(), targets[start : start + step], reduction="none"
        )
        for start in range(0, len(targets), step)
    ]
    return torch.cat(picked) if picked else hidden.new_zeros(0, dtype=torch.float32)


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows_per_chunk: int | None = None
) -> torch.Tensor:
    """The mean cross-entropy of hidden [n, d] @ weight.T [d, vocabulary] against targets [n], made a chunk of rows
    at a time: the gradients are computed in the forward pass (softmax minus one-hot, chunk by chunk) and only
    scaled in the backward pass, so no [n, vocabulary] tensor is kept, or made whole."""
    rows = rows_per_chunk if rows_per_chunk is not None else chunk_rows(weight.shape[0])
    return _linear_cross_entropy_function().apply(hidden, weight, targets, rows)


@functools.cache
def _linear_cross_entropy_function() -> Any:
    import torch

    class _LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(  # type: ignore[override]
            ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows_per_chunk: int
        ) -> torch.Tensor:
            count = hidden.shape[0]
            weight_needs_grad = ctx.needs_input_grad[1]
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight_needs_grad else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, count, rows_per_chunk):
                chunk = hidden[start : start + rows_per_chunk]
                chunk_targets = targets[start : start + rows_per_chunk]
                log_probabilities = torch.log_softmax(torch.mm(chunk, weight.t()).float(), dim=-1)
                total -= log_probabilities.gather(1, chunk_targets[:, None]).sum()
                # The gradient of the summed loss with respect to the logits: softmax minus one-hot, in place.
                probabilities = log_probabilities.exp_()
                probabilities[torch.arange(len(chunk_targets), device=hidden.device), chunk_targets] -= 1.0
                grad_hidden[start : start + rows_per_chunk] = torch.mm(probabilities.to(weight.dtype), weight)
                if grad_weight is not None:
                    grad_weight += torch.mm(probabilities.t().to(chunk.dtype), chunk)
            scale = 1.0 / count if count else float("nan")
            ctx.save_for_backward(grad_hidden, grad_weight if grad_weight is not None else torch.empty(0))
            ctx.scale, ctx.weight_dtype, ctx.weight_needs_grad = scale, weight.dtype, weight_needs_grad
            return total * scale

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
            grad_hidden, grad_weight = ctx.saved_tensors
            factor = grad_output * ctx.scale
            weight_grad = (grad_weight * factor).to(ctx.weight_dtype) if ctx.weight_needs_grad else None
            return grad_hidden * factor.to(grad_hidden.dtype), weight_grad, None, None

    return _LinearCrossEntropy
