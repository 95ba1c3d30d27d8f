"""The chunked linear cross-entropy and attention by example equal what they replace: losses and gradients."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tuner.data.packing import IGNORE_INDEX  # noqa: E402
from tuner.data.prepare import prepare_study_data  # noqa: E402
from tuner.models.load import load_model, load_tokenizer, resolve_model  # noqa: E402
from tuner.settings import DataSettings, TrainBudget  # noqa: E402
from tuner.training.attention import example_spans, packed_attention  # noqa: E402
from tuner.training.loss import chunk_rows, linear_cross_entropy, token_losses, training_loss  # noqa: E402
from tuner.training.runtime import pick_runtime  # noqa: E402
from tuner.training.trial import batch_tensors  # noqa: E402

BUDGET = TrainBudget(train_tokens=8192, batch_size=4, seq_len=512, evaluations=1)
"""Rows of 512 tokens: several of the tiny tokenizer's GSM8K examples to a row."""


@pytest.fixture(scope="module")
def setup(tiny_model: Path, data_dir: Path):
    source = resolve_model(str(tiny_model))
    data = prepare_study_data(DataSettings("math"), BUDGET.packing(), load_tokenizer(source), data_dir)
    runtime = pick_runtime()
    return load_model(source, runtime.device, runtime.dtype), data, runtime


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("weight_trains", [False, True])
def test_the_chunked_linear_cross_entropy_equals_cross_entropy_of_the_whole_logits(rows_per_chunk, weight_trains):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(64, 16, generator=generator, requires_grad=True)
    weight = torch.randn(300, 16, generator=generator).requires_grad_(weight_trains)
    targets = torch.randint(0, 300, (64,), generator=generator)

    expected = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
    (expected * 3).backward()  # a gradient from above other than one is passed through
    expected_grads = [hidden.grad.clone(), weight.grad.clone() if weight_trains else None]
    hidden.grad = weight.grad = None

    ours = linear_cross_entropy(hidden, weight, targets, rows_per_chunk)
    (ours * 3).backward()
    assert float(ours.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    torch.testing.assert_close(hidden.grad, expected_grads[0], rtol=1e-5, atol=1e-7)
    if weight_trains:
        torch.testing.assert_close(weight.grad, expected_grads[1], rtol=1e-5, atol=1e-7)
    else:
        assert weight.grad is None


def test_chunks_hold_a_bounded_share_of_the_vocabulary():
    assert chunk_rows(49_152) == 682
    assert chunk_rows(10**9) == 1


def test_examples_start_where_positions_do_not_follow_on():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [5, 6, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]])
    assert example_spans(positions) == [[(0, 3), (3, 5), (5, 6)], [(0, 2), (2, 6)], [(0, 6)]]


def varlen_stand_in(calls: list[int]):
    """torch's varlen_attn as documented (query [tokens, heads, dim], sequences at cumulative offsets, causal at
    window (-1, 0)), for the CPU: each sequence by scaled-dot-product attention; records the sequence counts."""

    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size, enable_gqa):
        assert window_size == (-1, 0) and cu_seq_k is cu_seq_q and cu_seq_q.dtype == torch.int32
        bounds = cu_seq_q.tolist()
        assert (
            bounds[0] == 0
            and bounds[-1] == query.shape[0]
            and max_q == max_k == max(b - a for a, b in pairwise(bounds))
        )
        calls.append(len(bounds) - 1)
        parts = [
            torch.nn.functional.scaled_dot_product_attention(
                *(part[a:b].transpose(0, 1)[None] for part in (query, key, value)),
                is_causal=True,
                scale=scale,
                enable_gqa=enable_gqa,
            )[0].transpose(0, 1)
            for a, b in pairwise(bounds)
        ]
        return torch.cat(parts)

    return varlen_attn


@pytest.mark.parametrize("path", ["split", "varlen"])
def test_attention_by_example_equals_the_block_diagonal_mask_with_gradients(setup, path, monkeypatch):
    """By example: split apart (the CPU's way), or the GPU's one variable-length flash-attention call, whose
    plumbing (flattened rows, cumulative offsets, grouped heads, causal window) a stand-in checks here."""
    model, data, runtime = setup
    calls: list[int] = []
    if path == "varlen":
        from torch.nn.attention import varlen

        from tuner.training import attention

        monkeypatch.setattr(varlen, "varlen_attn", varlen_stand_in(calls))
        monkeypatch.setattr(attention, "varlen_usable", lambda query: True)
    batch = batch_tensors(data.train, [0, 1, 2, 3], runtime.device)
    assert (batch["position_ids"][:, 1:] == 0).any(), "the rows must hold several examples to test anything"
    model.requires_grad_(True)
    try:
        results = []
        for by_example in (False, True):
            model.zero_grad(set_to_none=True)
            with packed_attention(model) if by_example else torch.enable_grad():
                loss = model(**batch, use_cache=False).loss
            loss.backward()
            results.append((float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}))
        assert model.config._attn_implementation == "sdpa"  # put back
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    (masked, masked_grads), (ours, our_grads) = results
    assert ours == pytest.approx(masked, rel=1e-5)
    examples = sum(len(spans) for spans in example_spans(batch["position_ids"]))
    assert calls == ([examples] * model.config.num_hidden_layers if path == "varlen" else [])
    for name, grad in masked_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_full_fine_tuning_gets_the_tied_heads_gradient_from_the_chunked_loss(setup):
    model, data, runtime = setup
    batch = batch_tensors(data.train, [0, 1], runtime.device)
    model.requires_grad_(True)
    try:
        results = []
        for loss_of in (lambda: model(**batch, use_cache=False).loss, lambda: training_loss(model, batch)):
            model.zero_grad(set_to_none=True)
            loss = loss_of()
            loss.backward()
            results.append((float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}))
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    (full, full_grads), (ours, our_grads) = results
    assert ours == pytest.approx(full, rel=1e-5)
    assert "model.embed_tokens.weight" in full_grads  # tied to the head: both paths' gradients land here
    for name, grad in full_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_token_losses_equal_the_models_logits_at_labelled_positions(setup):
    model, data, runtime = setup
    batch = batch_tensors(data.train, [0, 1, 2], runtime.device)
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits
        expected = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
        )
        ours = token_losses(model, batch)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_the_loss_without_gradients_is_the_same_mean_in_chunks(setup, monkeypatch):
    import tuner.training.loss

    monkeypatch.setattr(tuner.training.loss, "chunk_rows", lambda vocabulary: 7)  # several chunks
    model, data, runtime = setup
    batch = batch_tensors(data.train, [0, 1, 2], runtime.device)
    with torch.no_grad():
        expected = float(model(**batch, use_cache=False).loss)
        ours = float(training_loss(model, batch))
    assert ours == pytest.approx(expected, rel=1e-5)
