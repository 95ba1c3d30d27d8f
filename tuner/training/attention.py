"""Attention over packed rows by example: each example's causal attention alone, instead of the whole row's under a
block-diagonal mask.

transformers turns restarting position ids into a block-diagonal causal mask over the whole row. On a CPU the
masked kernel does the whole row's work (every query against every key, then masks), and the mask stops the
kernel from exploiting causality; running each example's slice as plain causal attention does only the work that
counts. It is the CPU's counterpart of variable-length flash attention.

It serves training and held-out losses only, inside `packed_attention(model)`: generation and benchmark scoring
(which pad and cache) keep the model's own attention.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

IMPLEMENTATION = "advisor_packed"
"""The name this attention is registered under in transformers' attention interface."""


def example_spans(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, stop) of each example: a new one starts wherever a position is not its predecessor's
    plus one (transformers' own rule for packed rows, find_packed_sequence_indices)."""
    import torch

    rows, length = position_ids.shape
    starts = torch.ones(position_ids.shape, dtype=torch.bool, device=position_ids.device)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    boundaries: list[list[int]] = [[] for _ in range(rows)]
    for row, column in starts.nonzero().tolist():
        boundaries[row].append(column)
    return [list(zip(row_starts, [*row_starts[1:], length], strict=True)) for row_starts in boundaries]


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: query [batch, heads, length, dim], key and value [batch, kv heads, length,
    dim]; returns [batch, length, heads, dim]. Causal attention within each example of each row."""
    import torch

    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        # Padding, a cache or no positions: not a packed training batch. packed_attention never gets here; a
        # caller outside it gets the model's usual attention.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    grouped = query.shape[1] != key.shape[1]
    if position_ids.shape[0] != query.shape[0]:
        position_ids = position_ids.expand(query.shape[0], -1)
    if dropout == 0.0 and varlen_usable(query):
        return varlen_attention(query, key, value, example_spans(position_ids), scaling, grouped), None
    # Rows and examples are taken apart by unbind and split (whose backward passes are one stack and one cat) in
    # the projections' own [length, heads, dim] layout, rather than sliced (each slice's gradient would be a
    # zero-filled tensor of the whole batch's size).
    rows = []
    for spans, *row in zip(
        example_spans(position_ids),
        query.transpose(1, 2).unbind(0),
        key.transpose(1, 2).unbind(0),
        value.transpose(1, 2).unbind(0),
        strict=True,
    ):
        lengths = [stop - start for start, stop in spans]
        parts = [
            torch.nn.functional.scaled_dot_product_attention(
                *(part.transpose(0, 1)[None] for part in example),
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
                enable_gqa=grouped,
            )[0].transpose(0, 1)
            for example in zip(*(tensor.split(lengths) for tensor in row), strict=True)
        ]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts))
    return torch.stack(rows), None


def varlen_usable(query: torch.Tensor) -> bool:
    """Whether torch's variable-length flash attention runs this query: a CUDA device of compute capability 8
    or more (Ampere on), bf16 or fp16."""
    import torch

    if not query.is_cuda or query.dtype not in (torch.bfloat16, torch.float16):
        return False
    return _flash_device(query.device.index if query.device.index is not None else torch.cuda.current_device())


@functools.cache
def _flash_device(index: int) -> bool:
    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401  (torch 2.10 on)
    except ImportError:
        return False
    return torch.backends.cuda.is_flash_attention_available() and torch.cuda.get_device_capability(index)[0] >= 8


def varlen_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    spans: list[list[tuple[int, int]]],
    scaling: float | None,
    grouped: bool,
) -> torch.Tensor:
    """Causal attention within each example by one variable-length flash-attention call (the GPU's way): the rows
    flattened into one sequence of tokens, the examples' boundaries as cumulative offsets. Query [batch, heads,
    length, dim], key and value [batch, kv heads, length, dim]; returns [batch, length, heads, dim]."""
    import torch
    from torch.nn.attention.varlen import varlen_attn

    batch, heads, length, dim = query.shape
    tokens = batch * length
    flat_query = query.transpose(1, 2).reshape(tokens, heads, dim)
    flat_key = key.transpose(1, 2).reshape(tokens, key.shape[1], dim)
    flat_value = value.transpose(1, 2).reshape(tokens, value.shape[1], dim)
    starts = [row * length + start for row, row_spans in enumerate(spans) for start, _ in row_spans]
    offsets = torch.tensor([*starts, tokens], dtype=torch.int32, device=query.device)
    longest = max(stop - start for row_spans in spans for start, stop in row_spans)
    out = varlen_attn(
        flat_query,
        flat_key,
        flat_value,
        offsets,
        offsets,
        longest,
        longest,
        scale=scaling,
        window_size=(-1, 0),  # causal
        enable_gqa=grouped,
    )
    return out.view(batch, length, heads, dim)


def register() -> None:
    """Makes IMPLEMENTATION known to transformers (idempotent). No attention mask is built for it: the model's
    mask creation skips implementations it has no mask function for."""
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, _uncompiled_forward())


@functools.cache
def _uncompiled_forward() -> Any:
    """packed_attention_forward, left out of torch.compile's graphs (training.compilation compiles the layers around
    it): its example lengths change every batch, so a graph of it would recompile each step. One object, so that
    compiled layers' guards on the attention function hold from one step to the next."""
    import torch

    return torch.compiler.disable(packed_attention_forward)


@contextlib.contextmanager
def packed_attention(model: PreTrainedModel) -> Iterator[None]:
    """Within this block the model attends by example over packed rows (see the module's docstring), where it
    uses transformers' attention interface with scaled-dot-product attention; otherwise nothing changes."""
    config = getattr(model, "config", None)
    own = getattr(config, "_attn_implementation", None)
    if own != "sdpa":
        # Eager, flash or a model of its own: left as it is (flash attention already works by example).
        yield
        return
    register()
    config._attn_implementation = IMPLEMENTATION  # type: ignore[union-attr]
    try:
        yield
    finally:
        config._attn_implementation = own  # type: ignore[union-attr]
